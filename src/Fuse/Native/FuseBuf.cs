using System.Runtime.InteropServices;

namespace ExportServer.Fuse.Native;

/// <summary>
/// <c>struct fuse_buf</c> (40 bytes): a receive buffer. libfuse mallocs <see cref="Mem"/> on the
/// first receive when it is null and reuses it afterwards; the owner frees it with free().
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 40)]
internal struct FuseBuf
{
    [FieldOffset(0)] public nuint Size;
    [FieldOffset(8)] public int Flags;
    [FieldOffset(16)] public nint Mem;
    [FieldOffset(24)] public int Fd;
    [FieldOffset(32)] public long Pos;
}
