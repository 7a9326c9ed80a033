namespace ExportServer.Block.Core;

public enum ChildRole
{
    /// <summary>The node that stores this node's bytes (QEMU's "file").</summary>
    File,

    /// <summary>The node that supplies unallocated ranges (QEMU's "backing").</summary>
    Backing,

    /// <summary>Any other child (data-file, target, …).</summary>
    Other,
}
