namespace ExportServer.Block.Native;

/// <summary>
/// The three regions of an io_uring that the process maps: the submission ring (head, tail, index
/// array), the completion ring (head, tail, completion entries; one mapping with the submission
/// ring where the kernel has IORING_FEAT_SINGLE_MMAP) and the submission entries.
/// </summary>
internal sealed unsafe class IoUringMemory : IDisposable
{
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

    public byte* SqRing { get; private set; }

    public byte* CqRing { get; private set; }

    public byte* Sqes { get; private set; }

    /// <summary>Maps the regions of ring <paramref name="fd"/>; 0 or -errno (nothing stays mapped then).</summary>
    public static int Map(int fd, in IoUringParams p, out IoUringMemory memory)
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
    }
}
