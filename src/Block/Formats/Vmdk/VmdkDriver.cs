using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// The "vmdk" driver: options file and backing (node name; null = none; object = inline; absent =
/// the descriptor's parentFileNameHint, opened read-only as vmdk relative to the image). Reading the
/// image's files is VmdkDriver.Open.cs, creating them VmdkDriver.Create.cs.
/// </summary>
internal sealed partial class VmdkDriver : IBlockDriver
{
    public string Name => "vmdk";

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        if (options.Options.ContainsKey("extents"))
        {
            // The extent files come from the descriptor alone: BlockdevOptionsVmdk has no member
            // for them, so QEMU's blockdev refuses the key before any file is opened.
            throw BlockException.Invalid($"Parameter '{options.FullName("extents")}' is unexpected");
        }

        var file = await context.OpenChildAsync(options, "file").ConfigureAwait(false)
                   ?? throw BlockException.Invalid($"Parameter '{options.FullName("file")}' is missing");
        var image = await OpenImageAsync(context, file).ConfigureAwait(false);
        var readOnly = context.ReadOnly || ApplyReadOnlyExtents(context, image.Extents);
        var node = new VmdkNode(context.NodeName, readOnly, file, image.Extents, image.CreateType, image.Descriptor, image.DescriptorLocation);
        return await HeaderBacking.AttachToAsync(
            node, node.AttachBacking, context, options, file, image.Descriptor?.ParentFileNameHint, "vmdk", "vmdk").ConfigureAwait(false);
    }

    /// <summary>
    /// Extents QEMU opens only read-only: hosted sparse version 3 without compression (changed
    /// block tracking). seSparse extents, read-only in QEMU, are written here; one whose layout
    /// cannot be written safely (overlapping areas, a table outside its area) is refused writable
    /// (read-only instead with auto-read-only).
    /// </summary>
    private static bool ApplyReadOnlyExtents(BlockOpenContext context, VmdkExtent[] extents)
    {
        foreach (var extent in extents.OfType<VmdkSparseExtent>())
        {
            if (extent.Layout.ReadOnlyVersion)
            {
                throw BlockException.Invalid("VMDK version 3 must be read only");
            }

            if (extent.Layout.Kind == VmdkSparseKind.SeSparse && extent.WriteRefusal is not null)
            {
                return context.AutoReadOnly ? true : throw new BlockException(Errno.EACCES, extent.WriteRefusal!);
            }
        }

        return false;
    }
}
