using System.Text.Json.Nodes;
using ExportServer.Block.Core.Options;
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
}
