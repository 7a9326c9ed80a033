using ExportServer.Block.Core;
using ExportServer.Block.Native;

namespace ExportServer.Block.Protocols.File;

/// <summary>What queries show of a file: no clusters, never dirty, and the space it takes (QEMU's raw_get_allocated_file_size).</summary>
internal sealed partial class FileNode : IImageInfoSource
{
    private static readonly BlockDriverInfo NoClusters = new(0, false);

    public BlockDriverInfo? DriverInfo => NoClusters;

    public long? AllocatedSize
    {
        get
        {
            var handle = _handle;
            var added = false;
            try
            {
                handle.DangerousAddRef(ref added);
                var bytes = LibC.AllocatedBytes(handle.DangerousGetHandle());
                return bytes >= 0 ? bytes : null;
            }
            catch (ObjectDisposedException)
            {
                return null;
            }
            finally
            {
                if (added)
                {
                    handle.DangerousRelease();
                }
            }
        }
    }
}
