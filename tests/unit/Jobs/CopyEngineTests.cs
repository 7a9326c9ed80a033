using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;
using ExportServer.Block.Jobs;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.Jobs;

public sealed class CopyEngineTests
{
    private static MemoryNode Patterned(string name, int length, byte seed)
    {
        var data = new byte[length];
        for (var i = 0; i < length; i++)
        {
            data[i] = (byte)(seed + i / 512);
        }

        return new MemoryNode(name, data);
    }

    [Fact]
    public async Task CopiesExactlyTheDirtyRangesAndCountsProgress()
    {
        var src = Patterned("src", 1 << 20, 1);
        var dst = new MemoryNode("dst", 1 << 20);
        var bitmap = new DirtyBitmap(src.Length, 65536);
        bitmap.Set(0, 65536);
        bitmap.Set(5 * 65536, 3 * 65536);
        var control = new JobControl();
        await new CopyEngine(src, dst, bitmap, control, new CopyOptions(ChunkSize: 65536, MaxInFlight: 3)).CopyDirtyAsync();
        Assert.True(bitmap.IsEmpty);
        Assert.Equal(4 * 65536, control.Offset);
        Assert.Equal(src.Data.AsSpan(0, 65536).ToArray(), dst.Data.AsSpan(0, 65536).ToArray());
        Assert.Equal(src.Data.AsSpan(5 * 65536, 3 * 65536).ToArray(), dst.Data.AsSpan(5 * 65536, 3 * 65536).ToArray());
        Assert.All(dst.Data.AsSpan(65536, 4 * 65536).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task CopyBeforeWriteKeepsTheOldDataAndIsNotRepeated()
    {
        var src = Patterned("src", 256 * 1024, 7);
        var old = src.Data.ToArray();
        var dst = new MemoryNode("dst", 256 * 1024);
        var bitmap = new DirtyBitmap(src.Length, 65536);
        bitmap.SetAll();
        var engine = new CopyEngine(src, dst, bitmap, new JobControl(), new CopyOptions());
        src.WriteNotifiers.Add((_, o, l) => engine.CopyNowAsync(o, l, BeforeWriteErrors.FailWrite));
        await src.WriteAsync(70_000, new byte[1000]);
        Assert.Equal(old.AsSpan(65536, 65536).ToArray(), dst.Data.AsSpan(65536, 65536).ToArray());
        Assert.False(bitmap.IsDirty(65536));
        await engine.CopyDirtyAsync();
        Assert.Equal(old, dst.Data);
    }

    [Fact]
    public async Task ReportPolicyFailsAndLeavesTheRangeDirty()
    {
        var src = Patterned("src", 128 * 1024, 3);
        var dst = new MemoryNode("dst", 64 * 1024);
        var bitmap = new DirtyBitmap(src.Length, 65536);
        bitmap.SetAll();
        var observer = new RecordingObserver();
        var engine = new CopyEngine(src, dst, bitmap, new JobControl(observer), new CopyOptions(ChunkSize: 65536, MaxInFlight: 1));
        await Assert.ThrowsAsync<BlockException>(() => engine.CopyDirtyAsync());
        Assert.True(bitmap.IsDirty(65536));
        Assert.Equal([(false, ErrorAction.Report)], observer.Errors);
    }

    [Fact]
    public async Task IgnorePolicySkipsTheFailedRange()
    {
        var src = Patterned("src", 128 * 1024, 3);
        var dst = new MemoryNode("dst", 64 * 1024);
        var bitmap = new DirtyBitmap(src.Length, 65536);
        bitmap.SetAll();
        var control = new JobControl(new RecordingObserver());
        await new CopyEngine(src, dst, bitmap, control, new CopyOptions(ChunkSize: 65536, OnTargetError: ErrorPolicy.Ignore)).CopyDirtyAsync();
        Assert.True(bitmap.IsEmpty);
        Assert.Equal(src.Data.AsSpan(0, 65536).ToArray(), dst.Data);
    }

    [Fact]
    public async Task StopPolicyPausesUntilResumedThenRetries()
    {
        var src = Patterned("src", 64 * 1024, 9);
        var dst = new FlakyNode(64 * 1024);
        var bitmap = new DirtyBitmap(src.Length, 65536);
        bitmap.SetAll();
        var observer = new RecordingObserver();
        var control = new JobControl(observer);
        var copy = new CopyEngine(src, dst, bitmap, control, new CopyOptions(OnTargetError: ErrorPolicy.Stop)).CopyDirtyAsync();
        await observer.PausedSignal.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(JobIoStatus.Failed, control.IoStatus);
        Assert.False(copy.IsCompleted);
        dst.Fail = false;
        control.Resume();
        await copy.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(JobIoStatus.Ok, control.IoStatus);
        Assert.Equal(src.Data, dst.Data);
    }

    [Fact]
    public async Task CancelStopsAtThePausePoint()
    {
        var src = Patterned("src", 1 << 20, 1);
        var dst = new MemoryNode("dst", 1 << 20);
        var bitmap = new DirtyBitmap(src.Length, 65536);
        bitmap.SetAll();
        var control = new JobControl();
        control.Cancel(force: true);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => new CopyEngine(src, dst, bitmap, control, new CopyOptions()).CopyDirtyAsync());
    }

    private sealed class FlakyNode(long length) : BlockNode("flaky", false)
    {
        public bool Fail { get; set; } = true;

        public byte[] Data { get; } = new byte[length];

        public override string DriverName => "flaky";

        public override long Length => Data.Length;

        protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
        {
            Data.AsMemory((int)offset, buffer.Length).CopyTo(buffer);
            return ValueTask.CompletedTask;
        }

        protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
        {
            if (Fail)
            {
                throw new BlockException(Errno.EIO, "injected");
            }

            buffer.CopyTo(Data.AsMemory((int)offset));
            return ValueTask.CompletedTask;
        }
    }
}
