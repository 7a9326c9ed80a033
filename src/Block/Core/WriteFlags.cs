namespace ExportServer.Block.Core;

[Flags]
public enum WriteFlags
{
    None = 0,

    /// <summary>Force unit access: the data is on stable storage when the write completes.</summary>
    Fua = 1,

    /// <summary>
    /// Store the data compressed (QEMU's BDRV_REQ_WRITE_COMPRESSED). Only nodes whose
    /// <see cref="BlockNode.CompressedWriteSize"/> is non-zero accept it; the request must cover
    /// whole units of that size (a partial unit only at the end of the node).
    /// </summary>
    Compressed = 2,
}
