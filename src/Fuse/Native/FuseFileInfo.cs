using System.Runtime.InteropServices;

namespace ExportServer.Fuse.Native;

/// <summary>
/// <c>struct fuse_file_info</c> of libfuse 3.14 (40 bytes). The C bit-fields share the 32-bit word
/// at offset 4, allocated from bit 0 in declaration order: writepage, direct_io, keep_cache, flush,
/// nonseekable, flock_release, cache_readdir, noflush.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 40)]
internal struct FuseFileInfo
{
    public const uint WritePageBit = 1u << 0;
    public const uint DirectIoBit = 1u << 1;
    public const uint KeepCacheBit = 1u << 2;
    public const uint FlushBit = 1u << 3;
    public const uint NonSeekableBit = 1u << 4;
    public const uint FlockReleaseBit = 1u << 5;
    public const uint CacheReaddirBit = 1u << 6;
    public const uint NoFlushBit = 1u << 7;

    [FieldOffset(0)] public int Flags;
    [FieldOffset(4)] public uint Bits;
    [FieldOffset(16)] public ulong Fh;
    [FieldOffset(24)] public ulong LockOwner;
    [FieldOffset(32)] public uint PollEvents;

    public bool DirectIo
    {
        readonly get => (Bits & DirectIoBit) != 0;
        set => Bits = value ? Bits | DirectIoBit : Bits & ~DirectIoBit;
    }

    public bool KeepCache
    {
        readonly get => (Bits & KeepCacheBit) != 0;
        set => Bits = value ? Bits | KeepCacheBit : Bits & ~KeepCacheBit;
    }
}
