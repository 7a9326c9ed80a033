using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// The "qcow2" driver: options file, backing (node name; null = none; object = inline; absent = the
/// header's backing file, opened read-only relative to the image's directory with the header's
/// backing format or a probe), data-file, lazy-refcounts, l2-cache-size, refcount-cache-size,
/// cache-size, cache-clean-interval, and snapshot.id / snapshot.name (open an internal snapshot read-only).
/// </summary>
public sealed partial class Qcow2Driver : IBlockDriver
{
    public string Name => "qcow2";

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var file = await context.OpenChildAsync(options, "file").ConfigureAwait(false)
                   ?? throw BlockException.Invalid($"Parameter '{options.FullName("file")}' is missing");
        var qcowOptions = ReadOptions(options);
        var node = await Qcow2Node.OpenAsync(context.NodeName, context.ReadOnly, file, qcowOptions, context.Graph.Objects).ConfigureAwait(false);
        node.Events = context.Graph;
        try
        {
            await OpenDataFileAsync(context, options, node, file).ConfigureAwait(false);
            await OpenBackingAsync(context, options, node, file).ConfigureAwait(false);
            return node;
        }
        catch
        {
            await node.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private static Qcow2Options ReadOptions(OptionReader options)
    {
        var l2 = options.GetSize("l2-cache-size");
        var refcount = options.GetSize("refcount-cache-size");
        var combined = options.GetSize("cache-size");
        if (combined is { } total)
        {
            if (l2 is not null && refcount is not null)
            {
                throw BlockException.Invalid("cache-size, l2-cache-size and refcount-cache-size may not be set at the same time");
            }

            // As QEMU: whatever is not given explicitly is the rest of the combined size.
            l2 ??= refcount is null ? total * 3 / 4 : total - refcount.Value;
            refcount ??= total - l2.Value;
            if (l2 < 0 || refcount < 0)
            {
                throw BlockException.Invalid($"l2-cache-size + refcount-cache-size may not exceed cache-size ({total})");
            }
        }

        var interval = options.GetInt("cache-clean-interval") ?? Qcow2Options.DefaultCacheCleanInterval;
        if (interval is < 0 or > int.MaxValue)
        {
            throw BlockException.Invalid("Cache clean interval too big");
        }

        string? snapshot = null;
        if (options.GetObject("snapshot") is { } s)
        {
            snapshot = s.GetString("id") ?? s.GetString("name");
            s.EnsureAllConsumed();
        }

        Qcow2OverlapCheck.Read(options);
        var (encryptFormat, encryptKeySecret) = ReadEncrypt(options);
        return new Qcow2Options
        {
            LazyRefcounts = options.GetBool("lazy-refcounts"),
            PassDiscardRequest = options.GetBool("pass-discard-request"),
            PassDiscardSnapshot = options.GetBool("pass-discard-snapshot", true),
            PassDiscardOther = options.GetBool("pass-discard-other", false),
            DiscardNoUnref = options.GetBool("discard-no-unref", false),
            L2CacheEntrySize = options.GetInt("l2-cache-entry-size"),
            EncryptFormat = encryptFormat,
            EncryptKeySecret = encryptKeySecret,
            L2CacheSize = l2,
            RefcountCacheSize = refcount,
            CacheCleanInterval = (int)interval,
            Snapshot = snapshot,
        };
    }

    /// <summary>encrypt.format (required when encrypt is given, as QAPI's union) and encrypt.key-secret, the open options of both formats.</summary>
    private static (string? Format, string? KeySecret) ReadEncrypt(OptionReader options)
    {
        if (options.GetObject("encrypt") is not { } encrypt)
        {
            return (null, null);
        }

        var format = encrypt.RequireString("format");
        if (format is not ("aes" or "luks"))
        {
            throw BlockException.Invalid($"Parameter '{encrypt.FullName("format")}' does not accept value '{format}'");
        }

        var secret = encrypt.GetString("key-secret");
        encrypt.EnsureAllConsumed();
        return (format, secret);
    }

    private static async ValueTask OpenDataFileAsync(BlockOpenContext context, OptionReader options, Qcow2Node node, BlockNode file)
    {
        var given = options.Has("data-file");
        if (!node.Header.HasDataFile)
        {
            options.Consume("data-file");
            if (given)
            {
                throw BlockException.Invalid("'data-file' can only be set for images with an external data file");
            }

            return;
        }

        BlockNode? data;
        if (given)
        {
            data = await context.OpenChildAsync(options, "data-file").ConfigureAwait(false);
        }
        else
        {
            options.Consume("data-file");
            var name = node.Header.DataFile
                       ?? throw BlockException.Invalid($"qcow2: image '{file.FileName}' has an external data file but no data file name");
            data = await HeaderBacking.OpenInlineAsync(context, "data-file", new JsonObject
            {
                ["driver"] = "file",
                ["filename"] = BackingFileName.Resolve(file.FileName, name),
            }).ConfigureAwait(false);
        }

        node.AttachDataFile(data!);
    }

    private static async ValueTask OpenBackingAsync(BlockOpenContext context, OptionReader options, Qcow2Node node, BlockNode file)
    {
        var backing = await HeaderBacking.OpenOptionOrHeaderAsync(
            context, options, file, node.Header.BackingFile, node.Header.BackingFormat, "qcow2").ConfigureAwait(false);
        if (backing is not null)
        {
            node.AttachBacking(backing);
        }
    }
}
