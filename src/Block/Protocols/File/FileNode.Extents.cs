using ExportServer.Block.Core;
using ExportServer.Block.Native;

namespace ExportServer.Block.Protocols.File;

internal sealed partial class FileNode
{
    /// <summary>Set once cachestat(2) turns out to be missing (a kernel before 6.5): no extent is offered after that.</summary>
    private static volatile bool s_noCacheStat;

    /// <summary>
    /// A regular file read through the page cache is its own extent, offered only while every page
    /// of the range is in the cache (cachestat(2)), so that sending from it does not wait for the
    /// disk on the caller's thread (an event loop). Not with direct I/O, which keeps the page cache
    /// out of the way.
    /// </summary>
    bool IFileExtentSource.TryLeaseExtent(long offset, int length, out FileExtent extent)
    {
        extent = default;
        if (_direct || !_isRegular || s_noCacheStat)
        {
            return false;
        }

        var lease = Lease();
        var page = Environment.SystemPageSize;
        var pages = ((offset + length + page - 1) / page) - (offset / page);
        var cached = LibC.CachedPages(lease.Fd, offset, length);
        if (cached != pages)
        {
            if (cached == -LibC.ENOSYS)
            {
                s_noCacheStat = true;
            }

            lease.Dispose();
            return false;
        }

        extent = new FileExtent(lease.Handle, offset, length);
        return true;
    }
}
