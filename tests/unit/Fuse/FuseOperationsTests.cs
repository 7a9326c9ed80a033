using ExportServer.Block.Core;
using ExportServer.Fuse;
using ExportServer.Fuse.Native;
using Xunit;

namespace ExportServer.UnitTests.Fuse;

/// <summary>The export's request semantics (QEMU's fuse.c rules) over in-memory nodes, without a mount.</summary>
public sealed class FuseOperationsTests
{
    private const int EPERM = 1;
    private const int ENOENT = 2;
    private const int EIO = 5;
    private const int ENXIO = 6;
    private const int EACCES = 13;
    private const int EINVAL = 22;
    private const int ENOSPC = 28;
    private const int EROFS = 30;
    private const int EOPNOTSUPP = 95;

    private readonly RecordingReplies _replies = new();
    private nint _nextReq = 100;

    private (FuseOperations Ops, SparseMemoryNode Node) Create(long length, bool writable = true, bool growable = false, bool allowOther = false)
    {
        var node = new SparseMemoryNode(length, readOnly: !writable);
        var ops = new FuseOperations(node, writable, growable, _replies, logger: null) { AllowOther = allowOther };
        return (ops, node);
    }

    private async Task<RecordingReplies.Reply> Do(FuseOperations ops, Action<FuseOperations, nint> request)
    {
        var req = _nextReq++;
        request(ops, req);
        await ops.WhenIdleAsync().WaitAsync(TimeSpan.FromSeconds(10));
        return _replies.Single(req);
    }

    private static Stat Attr(uint mode = 0, uint uid = 0, uint gid = 0, long size = 0) =>
        new() { Mode = mode, Uid = uid, Gid = gid, Size = size };

    [Fact]
    public async Task GetAttrDescribesARegularFileOfTheNodeSize()
    {
        var (ops, node) = Create(64 * 1024);
        node.Data.AsSpan(8192, 100).Fill(1);    // one data chunk of 4 KiB
        node.Data.AsSpan(40960, 5000).Fill(2);  // spans two chunks

        var r = await Do(ops, (o, q) => o.GetAttr(q, LibFuse.RootInode));

        Assert.Equal("attr", r.Kind);
        Assert.Equal(0x8000u | 0x180, r.Attr.Mode);     // S_IFREG | 0600
        Assert.Equal(64 * 1024, r.Attr.Size);
        Assert.Equal(3 * 4096 / 512, r.Attr.Blocks);
        Assert.Equal(1UL, r.Attr.NLink);
        Assert.Equal(LibFuse.RootInode, r.Attr.Ino);
        Assert.Equal(Libc.GetUid(), r.Attr.Uid);

        var (roOps, _) = Create(4096, writable: false);
        var ro = await Do(roOps, (o, q) => o.GetAttr(q, LibFuse.RootInode));
        Assert.Equal(0x8000u | 0x100, ro.Attr.Mode);    // S_IFREG | 0400
    }

    [Fact]
    public async Task ReadIsShortAtTheEndAndEmptyBeyondIt()
    {
        var (ops, node) = Create(10000);
        new Random(3).NextBytes(node.Data);

        var r = await Do(ops, (o, q) => o.Read(q, 8192, 8192));
        Assert.Equal(node.Data.AsSpan(8192).ToArray(), r.Data);

        var beyond = await Do(ops, (o, q) => o.Read(q, 20000, 4096));
        Assert.Equal("buf", beyond.Kind);
        Assert.Empty(beyond.Data!);
    }

    [Fact]
    public async Task ReadErrorsOfTheNodeAnswerEioOnce()
    {
        var (ops, node) = Create(8192);
        node.FailReads = true;

        var r = await Do(ops, (o, q) => o.Read(q, 0, 4096));

        Assert.Equal(("err", EIO), (r.Kind, r.Errno));
        node.FailReads = false;
        Assert.Equal("buf", (await Do(ops, (o, q) => o.Read(q, 0, 4096))).Kind);
    }

    [Fact]
    public async Task OversizedReadIsInvalid()
    {
        var (ops, _) = Create(8192);
        var r = await Do(ops, (o, q) => o.Read(q, 0, FuseOperations.MaxRead + 1));
        Assert.Equal(EINVAL, r.Errno);
    }

    [Fact]
    public async Task WritesReachTheNode()
    {
        var (ops, node) = Create(8192);
        var payload = Enumerable.Range(0, 1000).Select(i => (byte)i).ToArray();

        var r = await Do(ops, (o, q) => o.Write(q, payload, 777));

        Assert.Equal(("write", 1000), (r.Kind, r.Count));
        Assert.Equal(payload, node.Data.AsSpan(777, 1000).ToArray());
    }

    [Fact]
    public async Task ReadOnlyExportRefusesWritesResizeAndFallocate()
    {
        var (ops, node) = Create(8192, writable: false);

        Assert.Equal(EACCES, (await Do(ops, (o, q) => o.Write(q, new byte[10], 0))).Errno);
        Assert.Equal(EACCES, (await Do(ops, (o, q) => o.SetAttr(q, 1, Attr(size: 4096), LibFuse.SetAttrSize))).Errno);
        Assert.Equal(EACCES, (await Do(ops, (o, q) => o.Fallocate(q, Libc.FallocPunchHole | Libc.FallocKeepSize, 0, 4096))).Errno);
        Assert.Equal(EROFS, (await Do(ops, (o, q) => o.SetAttr(q, 1, Attr(mode: 0x180), LibFuse.SetAttrMode))).Errno);
        Assert.Equal(8192, node.Length);
    }

    [Fact]
    public async Task FixedSizeExportCutsWritesAtTheEnd()
    {
        var (ops, node) = Create(8192);

        var straddling = await Do(ops, (o, q) => o.Write(q, Enumerable.Repeat((byte)7, 100).ToArray(), 8192 - 40));
        Assert.Equal(("write", 40), (straddling.Kind, straddling.Count));

        var atEnd = await Do(ops, (o, q) => o.Write(q, new byte[100], 8192));
        Assert.Equal(EIO, atEnd.Errno);
        Assert.Equal(8192, node.Length);
    }

    [Fact]
    public async Task GrowableExportExtendsTheNodeOnWritesPastTheEnd()
    {
        var (ops, node) = Create(4096, growable: true);
        var payload = Enumerable.Repeat((byte)9, 500).ToArray();

        var r = await Do(ops, (o, q) => o.Write(q, payload, 10000));

        Assert.Equal(500, r.Count);
        Assert.Equal(10500, node.Length);
        Assert.Equal(payload, node.Data.AsSpan(10000).ToArray());
        Assert.All(node.Data.AsSpan(4096, 10000 - 4096).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task ConcurrentGrowingWritesNeverShrinkTheNode()
    {
        var (ops, node) = Create(0, growable: true);
        var reqs = Enumerable.Range(0, 64).Select(i => (Req: _nextReq++, Offset: (long)i * 4096)).ToArray();

        await Task.WhenAll(reqs.Reverse().Select(x => Task.Run(() => ops.Write(x.Req, Enumerable.Repeat((byte)(x.Offset / 4096 + 1), 4096).ToArray(), x.Offset))));
        await ops.WhenIdleAsync().WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(64 * 4096, node.Length);
        foreach (var (req, offset) in reqs)
        {
            Assert.Equal(4096, _replies.Single(req).Count);
            Assert.Equal((byte)(offset / 4096 + 1), node.Data[offset + 4095]);
        }
    }

    [Fact]
    public async Task TruncateResizesAndAnswersTheNewAttributes()
    {
        var (ops, node) = Create(8192);

        var grow = await Do(ops, (o, q) => o.SetAttr(q, 1, Attr(size: 1 << 20), LibFuse.SetAttrSize));
        Assert.Equal(("attr", 1L << 20), (grow.Kind, grow.Attr.Size));
        Assert.Equal(1 << 20, node.Length);

        var shrink = await Do(ops, (o, q) => o.SetAttr(q, 1, Attr(size: 100), LibFuse.SetAttrSize));
        Assert.Equal(100, shrink.Attr.Size);
        Assert.Equal(100, node.Length);
    }

    [Fact]
    public async Task PermissionChangesFollowAllowOther()
    {
        var (ops, _) = Create(4096);
        const int times = 1 << 4 | 1 << 5; // FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME (touch)

        Assert.Equal(EPERM, (await Do(ops, (o, q) => o.SetAttr(q, 1, Attr(mode: 0x1A4), LibFuse.SetAttrMode))).Errno);
        Assert.Equal(EOPNOTSUPP, (await Do(ops, (o, q) => o.SetAttr(q, 1, Attr(uid: 1000), LibFuse.SetAttrUid))).Errno);
        Assert.Equal(EOPNOTSUPP, (await Do(ops, (o, q) => o.SetAttr(q, 1, Attr(), times))).Errno);

        var owner = await Do(ops, (o, q) => o.SetAttr(q, 1, Attr(mode: 0x4000 | 0x100), LibFuse.SetAttrMode));
        Assert.Equal(0x8000u | 0x100, owner.Attr.Mode); // the file type stays S_IFREG

        ops.AllowOther = true;
        var shared = await Do(ops, (o, q) => o.SetAttr(q, 1, Attr(mode: 0x1A4, uid: 1000, gid: 50), LibFuse.SetAttrMode | LibFuse.SetAttrUid | LibFuse.SetAttrGid));
        Assert.Equal((0x8000u | 0x1A4, 1000u, 50u), (shared.Attr.Mode, shared.Attr.Uid, shared.Attr.Gid));
        Assert.Equal(1000u, (await Do(ops, (o, q) => o.GetAttr(q, 1))).Attr.Uid);
    }

    [Fact]
    public async Task FallocateModesFollowQemu()
    {
        var (ops, node) = Create(16384);
        node.DiscardUnmap = true;
        node.Data.AsSpan().Fill(0xEE);

        Assert.Equal(EOPNOTSUPP, (await Do(ops, (o, q) => o.Fallocate(q, 0, 0, 4096))).Errno);
        Assert.Equal(EINVAL, (await Do(ops, (o, q) => o.Fallocate(q, Libc.FallocPunchHole, 0, 4096))).Errno);
        Assert.Equal(EOPNOTSUPP, (await Do(ops, (o, q) => o.Fallocate(q, 0x08, 0, 4096))).Errno); // COLLAPSE_RANGE

        var punch = await Do(ops, (o, q) => o.Fallocate(q, Libc.FallocPunchHole | Libc.FallocKeepSize, 1000, 3000));
        Assert.Equal(("err", 0), (punch.Kind, punch.Errno));
        Assert.All(node.Data.AsSpan(1000, 3000).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(0xEE, node.Data[999]);
        Assert.Equal(0xEE, node.Data[4000]);
        Assert.Equal(ZeroFlags.MayUnmap | ZeroFlags.NoFallback, node.LastZeroFlags);

        // KEEP_SIZE clips at the end; without it a zero range grows the node.
        Assert.Equal(0, (await Do(ops, (o, q) => o.Fallocate(q, Libc.FallocZeroRange | Libc.FallocKeepSize, 12288, 10000))).Errno);
        Assert.Equal(16384, node.Length);
        Assert.Equal(0, (await Do(ops, (o, q) => o.Fallocate(q, Libc.FallocZeroRange, 16000, 1000))).Errno);
        Assert.Equal(17000, node.Length);
        Assert.All(node.Data.AsSpan(12288).ToArray(), b => Assert.Equal(0, b));

        // Plain allocation at or past the end grows the node, even when not growable.
        Assert.Equal(0, (await Do(ops, (o, q) => o.Fallocate(q, 0, 20000, 1000))).Errno);
        Assert.Equal(21000, node.Length);
    }

    [Fact]
    public async Task PunchHoleKeepsDataWhenTheNodeMayNotUnmap()
    {
        var (ops, node) = Create(8192);
        node.Data.AsSpan().Fill(1);

        await Do(ops, (o, q) => o.Fallocate(q, Libc.FallocPunchHole | Libc.FallocKeepSize, 0, 4096));

        Assert.Equal(ZeroFlags.NoFallback, node.LastZeroFlags);
        Assert.All(node.Data.AsSpan(0, 4096).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task SeekDataAndHoleFollowBlockStatus()
    {
        var (ops, node) = Create(8 * 4096);
        node.Data.AsSpan(2 * 4096, 4096).Fill(1);   // data in chunk 2
        node.Data.AsSpan(5 * 4096, 8192).Fill(1);   // data in chunks 5-6

        async Task<(string, long, int)> Seek(long offset, int whence)
        {
            var r = await Do(ops, (o, q) => o.Lseek(q, offset, whence));
            return (r.Kind, r.Offset, r.Errno);
        }

        Assert.Equal(("lseek", 2 * 4096L, 0), await Seek(0, Libc.SeekData));
        Assert.Equal(("lseek", 0L, 0), await Seek(0, Libc.SeekHole));
        Assert.Equal(("lseek", 3 * 4096L, 0), await Seek(2 * 4096 + 10, Libc.SeekHole));
        Assert.Equal(("lseek", 5 * 4096L, 0), await Seek(3 * 4096, Libc.SeekData));
        Assert.Equal(("lseek", 7 * 4096L, 0), await Seek(5 * 4096, Libc.SeekHole));
        Assert.Equal(("err", 0L, ENXIO), await Seek(7 * 4096, Libc.SeekData));
        Assert.Equal(("lseek", 8 * 4096L, 0), await Seek(8 * 4096, Libc.SeekHole));
        Assert.Equal(("err", 0L, ENXIO), await Seek(8 * 4096, Libc.SeekData));
        Assert.Equal(("err", 0L, ENXIO), await Seek(8 * 4096 + 1, Libc.SeekHole));
        Assert.Equal(("err", 0L, EINVAL), await Seek(0, 0));
    }

    [Fact]
    public async Task FlushFlushesTheNode()
    {
        var (ops, node) = Create(4096);
        var r = await Do(ops, (o, q) => o.Flush(q));
        Assert.Equal(("err", 0), (r.Kind, r.Errno));
        Assert.Equal(1, node.FlushCount);
    }

    [Fact]
    public async Task LookupFindsNothingAndStatFsDescribesTheFile()
    {
        var (ops, _) = Create(1 << 20);
        Assert.Equal(ENOENT, (await Do(ops, (o, q) => o.Lookup(q))).Errno);
        var st = (await Do(ops, (o, q) => o.StatFs(q))).StatFs;
        Assert.Equal((512UL, 2048UL, 255UL), (st.BlockSize, st.Blocks, st.NameMax));
    }

    [Fact]
    public void ErrorsMapToErrno()
    {
        Assert.Equal(ENOSPC, FuseOperations.ToErrno(new BlockException(Errno.ENOSPC, "full")));
        Assert.Equal(EIO, FuseOperations.ToErrno(new InvalidOperationException("bug")));
        Assert.Equal(EACCES, FuseOperations.ToErrno(new UnauthorizedAccessException()));
    }
}
