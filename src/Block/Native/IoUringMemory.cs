namespace ExportServer.Block.Native;

/// <summary>
/// One io_uring as the process sees it: the descriptor io_uring_setup(2) returns and the three
/// regions mapped from it: the submission ring (head, tail, mask, index array), the completion ring
/// (head, tail, mask, completion entries; one mapping with the submission ring where the kernel has
/// IORING_FEAT_SINGLE_MMAP) and the submission entries. <see cref="IoUring"/> (the shared ring) and
/// <see cref="ThreadRing"/> (a thread's own) are built on it; disposing it unmaps and closes.
/// </summary>
internal sealed unsafe class IoUringMemory : IDisposable
{
    /// <summary>IORING_ENTER_GETEVENTS: io_uring_enter waits for completions.</summary>
    public const uint EnterGetEvents = 1;

    private const int SysSetup = 425;
    private const int SysEnter = 426;
    private const uint FeatSingleMmap = 1;
    private const long OffsetSqRing = 0;
    private const long OffsetCqRing = 0x8000000;
    private const long OffsetSqes = 0x10000000;
    private const int SqeSize = 64;
    private const int CqeSize = 16;

    private nuint _sqRingSize;
    private nuint _cqRingSize;
    private nuint _sqesSize;

    private IoUringMemory()
    {
    }

    public int Fd { get; private set; } = -1;

    /// <summary>Submission entries, as the kernel rounded them.</summary>
    public uint Entries { get; private set; }

    public byte* SqRing { get; private set; }

    public byte* CqRing { get; private set; }

    public byte* Sqes { get; private set; }

    public uint* SqHead { get; private set; }

    public uint* SqTail { get; private set; }

    public uint* SqArray { get; private set; }

    public uint SqMask { get; private set; }

    public uint* CqHead { get; private set; }

    public uint* CqTail { get; private set; }

    public uint CqMask { get; private set; }

    public byte* Cqes { get; private set; }

    /// <summary>
    /// io_uring_setup(2) of <paramref name="entries"/> submission entries (a power of two), then the
    /// mappings; 0, or the negative errno of setup or mmap (ENOSYS: no io_uring; EPERM: forbidden by
    /// kernel.io_uring_disabled or a seccomp filter), nothing left open then.
    /// </summary>
    public static int Setup(uint entries, out IoUringMemory? ring)
    {
        ring = null;
        IoUringParams p = default;
        var fd = (int)LibC.Syscall(SysSetup, entries, (long)&p, 0, 0, 0, 0);
        if (fd < 0)
        {
            return -System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
        }

        var errno = Map(fd, p, out var memory);
        if (errno != 0)
        {
            LibC.Close(fd);
            return errno;
        }

        memory.Fd = fd;
        memory.Entries = p.SqEntries;
        memory.SqHead = (uint*)(memory.SqRing + p.SqHead);
        memory.SqTail = (uint*)(memory.SqRing + p.SqTail);
        memory.SqArray = (uint*)(memory.SqRing + p.SqArray);
        memory.SqMask = *(uint*)(memory.SqRing + p.SqRingMask);
        memory.CqHead = (uint*)(memory.CqRing + p.CqHead);
        memory.CqTail = (uint*)(memory.CqRing + p.CqTail);
        memory.CqMask = *(uint*)(memory.CqRing + p.CqRingMask);
        memory.Cqes = memory.CqRing + p.Cqes;
        ring = memory;
        return 0;
    }

    /// <summary>io_uring_enter(2): submits <paramref name="toSubmit"/> entries and, with <see cref="EnterGetEvents"/>, waits for <paramref name="minComplete"/> completions; the call's result, negative on failure (errno from the last P/Invoke error).</summary>
    public long Enter(uint toSubmit, uint minComplete, uint flags) => LibC.Syscall(SysEnter, Fd, toSubmit, minComplete, flags, 0, 0);

    /// <summary>Maps the regions of ring <paramref name="fd"/>; 0 or -errno (nothing stays mapped then).</summary>
    private static int Map(int fd, in IoUringParams p, out IoUringMemory memory)
    {
        memory = new IoUringMemory
        {
            _sqRingSize = p.SqArray + (p.SqEntries * sizeof(uint)),
            _cqRingSize = p.Cqes + (p.CqEntries * (nuint)CqeSize),
            _sqesSize = p.SqEntries * (nuint)SqeSize,
        };
        var single = (p.Features & FeatSingleMmap) != 0;
        if (single)
        {
            memory._sqRingSize = memory._cqRingSize = Math.Max(memory._sqRingSize, memory._cqRingSize);
        }

        var errno = memory.MapOne(fd, memory._sqRingSize, OffsetSqRing, out var sqRing);
        memory.SqRing = sqRing;
        if (errno == 0 && single)
        {
            memory.CqRing = sqRing;
        }
        else if (errno == 0)
        {
            errno = memory.MapOne(fd, memory._cqRingSize, OffsetCqRing, out var cqRing);
            memory.CqRing = cqRing;
        }

        if (errno == 0)
        {
            errno = memory.MapOne(fd, memory._sqesSize, OffsetSqes, out var sqes);
            memory.Sqes = sqes;
        }

        if (errno != 0)
        {
            memory.Dispose();
        }

        return errno;
    }

    private int MapOne(int fd, nuint size, long offset, out byte* address)
    {
        var p = LibC.MMap(null, size, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_SHARED | LibC.MAP_POPULATE, fd, offset);
        if (p == (void*)-1)
        {
            address = null;
            return -System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
        }

        address = (byte*)p;
        return 0;
    }

    public void Dispose()
    {
        if (Sqes != null)
        {
            LibC.MUnmap(Sqes, _sqesSize);
            Sqes = null;
        }

        if (CqRing != null && CqRing != SqRing)
        {
            LibC.MUnmap(CqRing, _cqRingSize);
        }

        CqRing = null;
        if (SqRing != null)
        {
            LibC.MUnmap(SqRing, _sqRingSize);
            SqRing = null;
        }

        if (Fd >= 0)
        {
            LibC.Close(Fd);
            Fd = -1;
        }
    }
}
