using ExportServer.Block.Core;

namespace ExportServer.Block.Formats;

/// <summary>Formats QEMU only reads (bochs, cloop, dmg): a read-write open is refused, or made read-only with auto-read-only (bdrv_apply_auto_read_only).</summary>
internal static class ReadOnlyFormat
{
    public static bool ReadOnlyOrRefuse(BlockOpenContext context) =>
        context.ReadOnly || context.AutoReadOnly ? true : throw new BlockException(Errno.EACCES, "Image is read-only");

    public static ValueTask RefuseWrite() => ValueTask.FromException(new BlockException(Errno.EACCES, "Image is read-only"));
}
