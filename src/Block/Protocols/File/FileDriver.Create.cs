using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Native;

namespace ExportServer.Block.Protocols.File;

/// <summary>
/// The 'file' driver, which also makes files for blockdev-create; 'host_device' makes nothing, so
/// QEMU's "Driver does not support blockdev-create" comes before a job starts, as for any such driver.
/// </summary>
internal sealed class RegularFileDriver() : FileDriver(hostDevice: false), IImageCreator
{
    /// <summary>
    /// BlockdevCreateOptionsFile: filename, size, preallocation (off, falloc, full), nocow and
    /// extent-size-hint (1 MiB unless given). Creates or truncates the file; "full" writes zeroes,
    /// "off" and "falloc" leave it sparse. As QEMU's, nocow and the hint are set where the file
    /// system has them (btrfs, XFS) and their failure elsewhere is no error: they only tune.
    /// </summary>
    public async ValueTask CreateAsync(BlockGraph graph, OptionReader options)
    {
        var fileName = options.RequireString("filename");
        var size = options.GetSize("size") ?? throw BlockException.Invalid($"Parameter '{options.FullName("size")}' is missing");
        var prealloc = options.GetString("preallocation") ?? "off";
        var noCow = options.GetBool("nocow", false);
        var extentSizeHint = options.GetSize("extent-size-hint") ?? (1 << 20);
        if (extentSizeHint > uint.MaxValue)
        {
            throw BlockException.Invalid("Extent size hint is too large");
        }
        if (prealloc is not ("off" or "full" or "falloc"))
        {
            throw BlockException.Invalid($"Unsupported preallocation mode '{prealloc}'");
        }

        try
        {
            await using var f = new FileStream(fileName, FileMode.Create, FileAccess.Write, FileShare.ReadWrite, 1, FileOptions.Asynchronous);
            TuneEmptyFile(f.SafeFileHandle.DangerousGetHandle(), noCow, (uint)extentSizeHint);
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
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            var errno = BlockException.From(e).Errno;
            throw new BlockException(errno, $"Could not create '{fileName}': {LibC.StrError((int)errno)}", e);
        }
    }

    /// <summary>Both only apply to a file with no data yet; their results are ignored, as QEMU ignores them.</summary>
    private static void TuneEmptyFile(nint fd, bool noCow, uint extentSizeHint)
    {
        if (noCow)
        {
            _ = LibC.SetNoCow(fd);
        }

        if (extentSizeHint != 0)
        {
            _ = LibC.SetExtentSizeHint(fd, extentSizeHint);
        }
    }
}
