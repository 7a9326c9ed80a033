namespace ExportServer.Block.Core;

/// <summary>
/// A protocol whose blockdev-create options nest its open options under "location" (rbd, gluster,
/// ssh), so a file made from a file name (qemu-img create, a job's new target) passes them there,
/// as QEMU's co_create_opts of these drivers do.
/// </summary>
public interface ILocationCreator : IImageCreator;
