using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Native;

namespace ExportServer.Block.Protocols.File;

internal sealed partial class FileDriver : IImageCreator
{
    /// <summary>
    /// BlockdevCreateOptionsFile: filename, size, preallocation (off, falloc, full), nocow and
    /// extent-size-hint (accepted; they tune file systems this code does not run on). Creates or
    /// truncates the file; "full" writes zeroes, "off" and "falloc" leave it sparse.
    /// </summary>
    public async ValueTask CreateAsync(BlockGraph graph, OptionReader options)
    {
        if (_hostDevice)
        {
            throw BlockException.NotSupported("Driver does not support blockdev-create");
        }

        var fileName = options.RequireString("filename");
        var size = options.GetSize("size") ?? throw BlockException.Invalid($"Parameter '{options.FullName("size")}' is missing");
        var prealloc = options.GetString("preallocation") ?? "off";
        options.GetBool("nocow");
        options.GetSize("extent-size-hint");
        if (prealloc is not ("off" or "full" or "falloc"))
        {
            throw BlockException.Invalid($"Unsupported preallocation mode '{prealloc}'");
        }

        try
        {
            await using var f = new FileStream(fileName, FileMode.Create, FileAccess.Write, FileShare.ReadWrite, 1, FileOptions.Asynchronous);
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
}
