using ExportServer.Fuse;
using ExportServer.Fuse.Native;
using Xunit;

namespace ExportServer.UnitTests.Fuse;

public sealed unsafe class FuseCallbacksTests
{
    [Fact]
    public void OpsTableFillsExactlyTheImplementedSlots()
    {
        var ops = FuseCallbacks.CreateOps();
        var slots = new ReadOnlySpan<nint>(&ops, FuseLowLevelOps.Size / sizeof(nint));

        // init, lookup, getattr, setattr, open, read, write, flush, release, fsync, statfs, fallocate, lseek
        Assert.Equal(13, slots.ToArray().Count(p => p != 0));
        Assert.Equal(0, ops.Destroy);
        Assert.Equal(0, ops.WriteBuf); // writes must arrive in memory, not as a splice pipe
        Assert.NotEqual(0, ops.Lseek);
    }

    [Fact]
    public void InitAsksForAsyncReadsWithoutWriteBackCacheOrSplice()
    {
        var ops = FuseCallbacks.CreateOps();
        var conn = new FuseConnInfo
        {
            MaxWrite = 4u * 1024 * 1024,
            Capable = uint.MaxValue,
            Want = FuseConnInfo.CapWritebackCache | FuseConnInfo.CapSpliceRead | (1u << 12),
        };

        ((delegate* unmanaged<nint, FuseConnInfo*, void>)ops.Init)(0, &conn);

        Assert.Equal((uint)FuseOperations.MaxRead, conn.MaxRead);   // must equal the max_read mount option
        Assert.Equal((uint)FuseOperations.MaxWrite, conn.MaxWrite);
        Assert.Equal(FuseConnInfo.CapAsyncRead, conn.Want & FuseConnInfo.CapAsyncRead);
        Assert.Equal(0u, conn.Want & (FuseConnInfo.CapWritebackCache | FuseConnInfo.CapSpliceRead));
        Assert.Equal(1u << 12, conn.Want & (1u << 12));                 // other wishes are kept
    }
}
