using System.Runtime.InteropServices;

namespace ExportServer.Fuse.Native;

/// <summary>glibc's <c>struct stat</c> on x86_64 (144 bytes); the layout differs on other architectures.</summary>
[StructLayout(LayoutKind.Explicit, Size = 144)]
internal struct Stat
{
    public const uint TypeMask = 0xF000;     // S_IFMT
    public const uint TypeRegular = 0x8000;  // S_IFREG

    [FieldOffset(0)] public ulong Dev;
    [FieldOffset(8)] public ulong Ino;
    [FieldOffset(16)] public ulong NLink;
    [FieldOffset(24)] public uint Mode;
    [FieldOffset(28)] public uint Uid;
    [FieldOffset(32)] public uint Gid;
    [FieldOffset(40)] public ulong RDev;
    [FieldOffset(48)] public long Size;
    [FieldOffset(56)] public long BlkSize;
    [FieldOffset(64)] public long Blocks;
    [FieldOffset(72)] public long ATimeSec;
    [FieldOffset(80)] public long ATimeNsec;
    [FieldOffset(88)] public long MTimeSec;
    [FieldOffset(96)] public long MTimeNsec;
    [FieldOffset(104)] public long CTimeSec;
    [FieldOffset(112)] public long CTimeNsec;

    public readonly bool IsRegularFile => (Mode & TypeMask) == TypeRegular;
}
