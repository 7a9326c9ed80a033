using System.Text.Json.Nodes;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Core;

/// <summary>What a driver gets when it opens a node: the generic options and a way to open children.</summary>
public sealed class BlockOpenContext
{
    internal BlockOpenContext(BlockGraph graph, string nodeName, bool readOnly, bool autoReadOnly, CacheOptions cache, bool discardUnmap, bool forceShare)
    {
        Graph = graph;
        NodeName = nodeName;
        ReadOnly = readOnly;
        AutoReadOnly = autoReadOnly;
        Cache = cache;
        DiscardUnmap = discardUnmap;
        ForceShare = forceShare;
    }

    public BlockGraph Graph { get; }

    public string NodeName { get; }

    public bool ReadOnly { get; }

    /// <summary>Fall back to read-only when the image cannot be opened for writing.</summary>
    public bool AutoReadOnly { get; }

    public CacheOptions Cache { get; }

    public bool DiscardUnmap { get; }

    /// <summary>Take no image locks that would keep others from writing (QEMU's force-share, read-only only).</summary>
    public bool ForceShare { get; }

    /// <summary>The 'file' child every format has, refused with QEMU's words when it is missing.</summary>
    public async ValueTask<BlockNode> OpenFileChildAsync(OptionReader options) =>
        await OpenChildAsync(options, "file").ConfigureAwait(false)
        ?? throw BlockException.Invalid($"Parameter '{options.FullName("file")}' is missing");

    /// <summary>
    /// Opens the child named <paramref name="key"/>: a string names an existing node, an object is
    /// opened inline with this node's read-only and cache settings inherited. Null when absent.
    /// </summary>
    public async ValueTask<BlockNode?> OpenChildAsync(OptionReader options, string key, bool required = true)
    {
        var raw = options.Raw(key);
        switch (raw)
        {
            case null when required:
                throw BlockException.Invalid($"Parameter '{options.FullName(key)}' is missing");
            case null:
                return null;
            case JsonValue v when v.TryGetValue<string>(out var name):
                // QEMU looks a child reference up as both a device and a node name (bdrv_lookup_bs).
                return Graph.TryFind(name) ?? throw new BlockException(Errno.ENOENT, $"Cannot find device='{name}' nor node-name='{name}'");
            case JsonObject o:
                var copy = (JsonObject)o.DeepClone();
                Inherit(copy, "read-only", ReadOnly);
                Inherit(copy, "auto-read-only", AutoReadOnly);
                Inherit(copy, "force-share", ForceShare);
                if (DiscardUnmap && !copy.ContainsKey("discard"))
                {
                    copy["discard"] = "unmap";
                }

                if (Cache.Direct || Cache.NoFlush)
                {
                    if (copy["cache"] is not JsonObject cache)
                    {
                        cache = new JsonObject();
                        copy["cache"] = cache;
                    }

                    Inherit(cache, "direct", Cache.Direct);
                    Inherit(cache, "no-flush", Cache.NoFlush);
                }

                return await Graph.OpenAsync(copy, options.FullName(key) + ".").ConfigureAwait(false);
            default:
                throw BlockException.Invalid($"Invalid parameter type for '{options.FullName(key)}', expected: BlockdevRef");
        }
    }

    private static void Inherit(JsonObject o, string key, bool value)
    {
        if (value && !o.ContainsKey(key))
        {
            o[key] = true;
        }
    }
}
