using System.Runtime.InteropServices;

namespace ExportServer.Fuse.Native;

/// <summary><c>struct fuse_args</c> (24 bytes): argc, argv, and whether libfuse allocated argv.</summary>
[StructLayout(LayoutKind.Explicit, Size = 24)]
internal unsafe struct FuseArgs
{
    [FieldOffset(0)] public int Argc;
    [FieldOffset(8)] public byte** Argv;
    [FieldOffset(16)] public int Allocated;
}
