namespace ExportServer.Block.Core;

/// <summary>
/// What a user of a node does with it, or lets others do: QEMU's BLK_PERM_* bits, with their
/// values, which image locks also use (bit i is locked at byte 100+i when held and at byte 200+i
/// when not shared with other processes).
/// </summary>
[Flags]
public enum BlockPermissions
{
    None = 0,

    /// <summary>Reads that must see consistent data.</summary>
    ConsistentRead = 1,

    /// <summary>Writes that change what the node reads; the node must stay read-write.</summary>
    Write = 2,

    /// <summary>Writes of data the node already holds (a copy-on-read or a stream into the top).</summary>
    WriteUnchanged = 4,

    /// <summary>Changes of the node's size.</summary>
    Resize = 8,

    All = ConsistentRead | Write | WriteUnchanged | Resize,
}
