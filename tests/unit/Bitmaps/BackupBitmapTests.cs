using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;
using ExportServer.Block.Jobs.Backup;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.Bitmaps;

/// <summary>
/// A backup's bitmap: frozen (busy, writes go to the successor) until the backup ends, then settled
/// by bitmap-mode and outcome as QEMU's backup_cleanup_sync_bitmap does.
/// </summary>
public sealed class BackupBitmapTests
{
    private const long G = 65536;

    /// <summary>b0 marks granule 0 before the backup; granule 5 is written while it runs; granule 9 is left uncopied.</summary>
    [Theory]
    [InlineData(BitmapSyncMode.OnSuccess, true, new long[] { 5 })]
    [InlineData(BitmapSyncMode.OnSuccess, false, new long[] { 0, 5 })]
    [InlineData(BitmapSyncMode.Never, true, new long[] { 0, 5 })]
    [InlineData(BitmapSyncMode.Never, false, new long[] { 0, 5 })]
    [InlineData(BitmapSyncMode.Always, true, new long[] { 5 })]
    [InlineData(BitmapSyncMode.Always, false, new long[] { 5, 9 })]
    public async Task SettledByModeAndOutcome(BitmapSyncMode mode, bool succeeded, long[] dirty)
    {
        await using var node = new MemoryNode("m", 16 * G);
        var b = node.CreateDirtyBitmap("b0", G);
        await node.WriteAsync(0, new byte[512]);
        var backup = new BackupBitmap(b, mode);
        backup.Freeze();
        Assert.True(b.Busy);
        Assert.Throws<BlockException>(() => b.Check(BitmapChecks.Busy));
        await node.WriteAsync(5 * G, new byte[512]);
        Assert.Equal(G, b.Count); // frozen: the write went to the successor
        var uncopied = new DirtyBitmap(16 * G, G);
        uncopied.Set(9 * G, G);
        backup.Settle(succeeded, uncopied);
        backup.Settle(!succeeded, null); // settled once only
        Assert.False(b.Busy);
        Assert.Equal(dirty, Enumerable.Range(0, 16).Where(i => b.Bits.IsDirty(i * G)).Select(i => (long)i));
        await node.WriteAsync(12 * G, new byte[512]);
        Assert.True(b.Bits.IsDirty(12 * G));
    }

    [Fact]
    public async Task ABackupThatNeverStartedLeavesTheBitmapAsItWasPlusNewWrites()
    {
        await using var node = new MemoryNode("m", 16 * G);
        var b = node.CreateDirtyBitmap("b0", G);
        await node.WriteAsync(G, new byte[512]);
        var backup = new BackupBitmap(b, BitmapSyncMode.Always);
        backup.Freeze();
        await node.WriteAsync(3 * G, new byte[512]);
        backup.Restore();
        Assert.Equal(2 * G, b.Count);
        Assert.False(b.Frozen);
    }
}
