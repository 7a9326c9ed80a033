using Microsoft.Win32.SafeHandles;

namespace ExportServer.Block.Core;

/// <summary>
/// Bytes of a node that lie as they are in a regular file, with the page cache between (no direct
/// I/O): an export may send them from the file to its socket itself (sendfile), without reading
/// them into memory first. Holds a reference to the file's descriptor, so that a reopen closing the
/// node's handle meanwhile cannot let the number be reused; <see cref="Dispose"/> lets go of it.
/// </summary>
public readonly struct FileExtent : IDisposable
{
    internal FileExtent(SafeFileHandle leased, long offset, int length)
    {
        Handle = leased;
        Offset = offset;
        Length = length;
    }

    /// <summary>The file's handle, referenced until <see cref="Dispose"/>.</summary>
    public SafeFileHandle Handle { get; }

    /// <summary>Where the bytes start in the file.</summary>
    public long Offset { get; }

    public int Length { get; }

    public void Dispose() => Handle?.DangerousRelease();
}
