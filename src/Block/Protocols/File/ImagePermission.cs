namespace ExportServer.Block.Protocols.File;

/// <summary>
/// QEMU's BLK_PERM_* bits as they appear in image locks: bit i is locked at byte 100+i when held
/// and at byte 200+i when not shared with other processes.
/// </summary>
[Flags]
internal enum ImagePermission
{
    None = 0,
    ConsistentRead = 1,
    Write = 2,
    WriteUnchanged = 4,
    Resize = 8,
    All = ConsistentRead | Write | WriteUnchanged | Resize,
}
