namespace ExportServer.Block.Core;

/// <summary>
/// What a parent does with a child, which decides the permissions it asks of it and lets others
/// have (QEMU's BDRV_CHILD_* roles as <c>bdrv_default_perms</c> reads them).
/// </summary>
public enum ChildUse
{
    /// <summary>The parent passes its users' requests through (raw without a window, filters, an export's root): it needs and shares what they do.</summary>
    Filtered,

    /// <summary>The child holds the parent's metadata (a qcow2 file): nobody else may write or resize it.</summary>
    Metadata,

    /// <summary>The child holds the parent's data only (a qcow2 data file, raw with offset or size): nobody else may resize it.</summary>
    Data,

    /// <summary>A backing child: read only, and writable or resizable by others only if the parent's users allow writes.</summary>
    Cow,
}
