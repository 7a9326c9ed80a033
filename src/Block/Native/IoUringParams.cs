using System.Runtime.InteropServices;

namespace ExportServer.Block.Native;

/// <summary>
/// struct io_uring_params (120 bytes): what io_uring_setup(2) reports back, above all where the
/// head, tail, mask and array of each queue lie in the rings' mapped memory (io_sqring_offsets at
/// byte 40, io_cqring_offsets at byte 80).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct IoUringParams
{
    public uint SqEntries;
    public uint CqEntries;
    public uint Flags;
    public uint SqThreadCpu;
    public uint SqThreadIdle;
    public uint Features;
    public uint WqFd;
    private uint _reserved0;
    private uint _reserved1;
    private uint _reserved2;

    // struct io_sqring_offsets
    public uint SqHead;
    public uint SqTail;
    public uint SqRingMask;
    public uint SqRingEntries;
    public uint SqFlags;
    public uint SqDropped;
    public uint SqArray;
    private uint _sqReserved;
    private ulong _sqUserAddress;

    // struct io_cqring_offsets
    public uint CqHead;
    public uint CqTail;
    public uint CqRingMask;
    public uint CqRingEntries;
    public uint CqOverflow;
    public uint Cqes;
    public uint CqFlags;
    private uint _cqReserved;
    private ulong _cqUserAddress;
}
