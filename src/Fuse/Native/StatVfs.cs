using System.Runtime.InteropServices;

namespace ExportServer.Fuse.Native;

/// <summary>glibc's <c>struct statvfs</c> on LP64 (112 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 112)]
internal struct StatVfs
{
    [FieldOffset(0)] public ulong BlockSize;
    [FieldOffset(8)] public ulong FragmentSize;
    [FieldOffset(16)] public ulong Blocks;
    [FieldOffset(24)] public ulong BlocksFree;
    [FieldOffset(32)] public ulong BlocksAvailable;
    [FieldOffset(40)] public ulong Files;
    [FieldOffset(48)] public ulong FilesFree;
    [FieldOffset(56)] public ulong FilesAvailable;
    [FieldOffset(64)] public ulong FsId;
    [FieldOffset(72)] public ulong Flags;
    [FieldOffset(80)] public ulong NameMax;
}
