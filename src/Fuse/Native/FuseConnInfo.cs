using System.Runtime.InteropServices;

namespace ExportServer.Fuse.Native;

/// <summary><c>struct fuse_conn_info</c> of libfuse 3.14 (128 bytes), seen by the init callback.</summary>
[StructLayout(LayoutKind.Explicit, Size = 128)]
internal struct FuseConnInfo
{
    public const uint CapAsyncRead = 1u << 0;
    public const uint CapSpliceWrite = 1u << 7;
    public const uint CapSpliceMove = 1u << 8;
    public const uint CapSpliceRead = 1u << 9;
    public const uint CapWritebackCache = 1u << 16;

    [FieldOffset(0)] public uint ProtoMajor;
    [FieldOffset(4)] public uint ProtoMinor;
    [FieldOffset(8)] public uint MaxWrite;
    [FieldOffset(12)] public uint MaxRead;
    [FieldOffset(16)] public uint MaxReadahead;
    [FieldOffset(20)] public uint Capable;
    [FieldOffset(24)] public uint Want;
    [FieldOffset(28)] public uint MaxBackground;
    [FieldOffset(32)] public uint CongestionThreshold;
    [FieldOffset(36)] public uint TimeGranularity;
}
