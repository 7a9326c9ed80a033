using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Core;

/// <summary>A node whose image options can be changed in place (QEMU's bdrv_co_amend, the x-blockdev-amend job).</summary>
public interface IAmendableNode
{
    /// <summary>
    /// Applies the driver's part of QAPI BlockdevAmendOptions (without 'driver'); secrets named there
    /// are looked up in <paramref name="objects"/>. <paramref name="force"/> allows changes QEMU calls unsafe.
    /// </summary>
    ValueTask AmendAsync(OptionReader options, NamedObjects objects, bool force);
}
