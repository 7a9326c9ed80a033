using System.Runtime.InteropServices;

namespace ExportServer.Fuse.Native;

/// <summary>
/// <c>struct fuse_lowlevel_ops</c> of libfuse 3.14 on LP64: 44 function pointers in header order.
/// Only the slots the export implements are named; libfuse answers ENOSYS (or its documented
/// default) for every null slot. Offsets are the header's, asserted by unit tests.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal struct FuseLowLevelOps
{
    public const int Size = 352;

    [FieldOffset(0)] public nint Init;
    [FieldOffset(8)] public nint Destroy;
    [FieldOffset(16)] public nint Lookup;
    [FieldOffset(24)] public nint Forget;
    [FieldOffset(32)] public nint GetAttr;
    [FieldOffset(40)] public nint SetAttr;
    [FieldOffset(112)] public nint Open;
    [FieldOffset(120)] public nint Read;
    [FieldOffset(128)] public nint Write;
    [FieldOffset(136)] public nint Flush;
    [FieldOffset(144)] public nint Release;
    [FieldOffset(152)] public nint Fsync;
    [FieldOffset(192)] public nint StatFs;
    [FieldOffset(288)] public nint WriteBuf;
    [FieldOffset(320)] public nint Fallocate;
    [FieldOffset(336)] public nint CopyFileRange;
    [FieldOffset(344)] public nint Lseek;
}
