using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Core;

/// <summary>
/// Opt-in for drivers that make new images from QAPI options (QEMU's bdrv_co_create): blockdev-create.
/// A format formats nodes named in the options; a protocol makes its storage (a file).
/// </summary>
public interface IImageCreator
{
    /// <summary>
    /// Creates what <paramref name="options"/> (QAPI BlockdevCreateOptions of this driver, 'driver'
    /// already read) describe; nodes are named by node-name in <paramref name="graph"/>. The caller
    /// refuses whatever is left unread.
    /// </summary>
    ValueTask CreateAsync(BlockGraph graph, OptionReader options);
}
