namespace ExportServer.Block.Core;

/// <summary>
/// Opt-in for nodes that describe their image to queries (query-named-block-nodes' 'image'). A node
/// without it shows none of this, except what <see cref="ImageInfoQuery"/> derives from its children.
/// </summary>
public interface IImageInfoSource
{
    /// <summary>QEMU's bdrv_get_info; null when the driver has none.</summary>
    BlockDriverInfo? DriverInfo { get; }

    /// <summary>QEMU's bdrv_get_specific_info ('format-specific'), or null.</summary>
    FormatSpecificInfo? SpecificInfo => null;

    /// <summary>The backing file the image names, whether or not a backing node is attached.</summary>
    BackingFileName? BackingFile => null;

    /// <summary>Whether the image's data is encrypted (QEMU's bs->encrypted, 'encrypted' in BlockDeviceInfo).</summary>
    bool Encrypted => false;

    /// <summary>The bytes the node's own storage takes on disk; null to sum the children's (QEMU's default for formats).</summary>
    long? AllocatedSize => null;
}
