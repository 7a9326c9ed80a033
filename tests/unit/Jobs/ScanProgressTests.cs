using ExportServer.Block.Bitmaps;
using ExportServer.Block.Jobs;
using ExportServer.Block.Jobs.Stream;
using Xunit;

namespace ExportServer.UnitTests.Jobs;

/// <summary>
/// <see cref="ScanProgress"/>: the whole image is the length; ranges without copy count once the
/// pass has gone beyond them, so offset rises with the pass and ends at the length.
/// </summary>
public sealed class ScanProgressTests
{
    private const long K = 1024;

    [Fact]
    public void RangesWithoutCopyCountAsThePassGoesBeyondThem()
    {
        var bitmap = new DirtyBitmap(1024 * K, 64 * K);
        bitmap.Set(128 * K, 64 * K);
        bitmap.Set(512 * K, 64 * K);
        var control = new JobControl();
        var progress = new ScanProgress(bitmap, control);
        Assert.Equal(1024 * K, control.Length);
        Assert.Equal(0, control.Offset);

        // The first copy: what lies below the next dirty range counts too.
        bitmap.Claim(128 * K, 64 * K);
        control.AddProgress(64 * K);
        progress.Advance();
        Assert.Equal(512 * K, control.Offset);

        bitmap.Claim(512 * K, 64 * K);
        control.AddProgress(64 * K);
        progress.Advance();
        Assert.Equal(1024 * K, control.Offset);
        progress.Finish();
        Assert.Equal(1024 * K, control.Offset);
    }

    [Fact]
    public void NothingToCopyCountsAtTheEnd()
    {
        var bitmap = new DirtyBitmap(300 * K, 64 * K);
        var control = new JobControl();
        var progress = new ScanProgress(bitmap, control);
        Assert.Equal(0, control.Offset);
        progress.Finish();
        Assert.Equal(300 * K, control.Offset);
        Assert.Equal(300 * K, control.Length);
    }
}
