using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Formats.Qcow2;
using ExportServer.Server.Daemon;

namespace ExportServer.Server.Commands;

/// <summary>
/// Image creation by driver, from QAPI BlockdevCreateOptions (blockdev-create, and the overlays of
/// blockdev-snapshot-sync). A format's creator formats an already opened protocol node; the file
/// creator makes the file itself.
/// </summary>
internal static class ImageCreators
{
    private static readonly Dictionary<string, Func<StorageDaemon, OptionReader, ValueTask>> Creators = new(StringComparer.Ordinal)
    {
        ["file"] = CreateFileAsync,
        ["qcow2"] = CreateQcow2Async,
    };

    /// <summary>Lets a format driver add its creator (formats live in the block layer).</summary>
    public static void Register(string driver, Func<StorageDaemon, OptionReader, ValueTask> create) => Creators[driver] = create;

    public static bool CanCreate(string driver) => Creators.ContainsKey(driver);

    public static async ValueTask CreateAsync(StorageDaemon daemon, JsonObject options)
    {
        var r = new OptionReader(options);
        var driver = r.RequireString("driver");
        if (!Creators.TryGetValue(driver, out var create))
        {
            throw Qmp.QmpException.Generic($"Driver '{driver}' does not support blockdev-create");
        }

        await create(daemon, r).ConfigureAwait(false);
    }

    /// <summary>BlockdevCreateOptionsFile: filename, size, preallocation (off/full), nocow, extent-size-hint.</summary>
    private static async ValueTask CreateFileAsync(StorageDaemon daemon, OptionReader r)
    {
        var filename = r.RequireString("filename");
        var size = r.GetSize("size") ?? throw Qmp.QmpException.Generic("Parameter 'size' is missing");
        var prealloc = r.GetString("preallocation") ?? "off";
        r.GetBool("nocow");
        r.GetSize("extent-size-hint");
        r.EnsureAllConsumed();
        await CreateRawFileAsync(filename, size, prealloc).ConfigureAwait(false);
    }

    /// <summary>
    /// Creates (or truncates) <paramref name="filename"/> as a raw file of <paramref name="size"/> bytes;
    /// "full" writes zeroes, "off" and "falloc" leave it sparse.
    /// </summary>
    public static async ValueTask CreateRawFileAsync(string filename, long size, string prealloc)
    {
        if (prealloc is not ("off" or "full" or "falloc"))
        {
            throw Qmp.QmpException.Generic($"Unsupported preallocation mode '{prealloc}'");
        }

        await using var f = new FileStream(filename, FileMode.Create, FileAccess.Write, FileShare.ReadWrite, 1, FileOptions.Asynchronous);
        if (prealloc == "full")
        {
            var zero = new byte[1 << 20];
            for (long pos = 0; pos < size; pos += zero.Length)
            {
                await f.WriteAsync(zero.AsMemory(0, (int)Math.Min(zero.Length, size - pos))).ConfigureAwait(false);
            }
        }

        f.SetLength(size);
    }

    /// <summary>
    /// BlockdevCreateOptionsQcow2: file and data-file are existing nodes (by name); size, version
    /// (v2/v3), backing-file, backing-fmt, cluster-size, preallocation, lazy-refcounts,
    /// refcount-bits, extended-l2, compression-type, data-file-raw. Encryption is refused.
    /// </summary>
    private static async ValueTask CreateQcow2Async(StorageDaemon daemon, OptionReader r)
    {
        var file = Node(daemon, r.RequireString("file"));
        var dataName = r.GetString("data-file");
        var data = dataName is null ? null : Node(daemon, dataName);
        if (r.Has("encrypt"))
        {
            throw Qmp.QmpException.Generic("Encryption is not supported by this qcow2 implementation");
        }

        var options = new Qcow2CreateOptions
        {
            Size = r.GetSize("size") ?? throw Qmp.QmpException.Generic("Parameter 'size' is missing"),
            Compat = r.GetString("version") ?? "v3",
            BackingFile = r.GetString("backing-file"),
            BackingFormat = r.GetString("backing-fmt"),
            ClusterSize = (int)Math.Min(r.GetSize("cluster-size") ?? 65536, int.MaxValue),
            Preallocation = r.GetEnum("preallocation", Qcow2Creator.PreallocationModes) ?? Qcow2Preallocation.Off,
            LazyRefcounts = r.GetBool("lazy-refcounts", false),
            RefcountBits = (int)Math.Min(r.GetInt("refcount-bits") ?? 16, int.MaxValue),
            ExtendedL2 = r.GetBool("extended-l2", false),
            CompressionType = r.GetString("compression-type") ?? "zlib",
            DataFile = data?.FileName,
            DataFileRaw = r.GetBool("data-file-raw", false),
        };
        r.EnsureAllConsumed();
        if (options.BackingFormat is not null && options.BackingFile is null)
        {
            throw Qmp.QmpException.Generic("Backing format cannot be used without backing file");
        }

        await Qcow2Creator.CreateAsync(file, options, data).ConfigureAwait(false);
    }

    private static BlockNode Node(StorageDaemon daemon, string name) =>
        daemon.Graph.TryFind(name) ?? throw Qmp.QmpException.Generic($"Cannot find device='' nor node-name='{name}'");
}
