using System.Collections.Concurrent;
using ExportServer.Block.Protocols.File;
using Xunit;

namespace ExportServer.UnitTests.Drivers;

/// <summary>Which windows write-behind starts: filled ones, whatever the order of the writes filling them, once armed.</summary>
public sealed class WriteBehindTests
{
    private const long Window = WriteBehind.Window;
    private readonly BlockingCollection<long> _started = new();

    private WriteBehind Create()
    {
        var wb = new WriteBehind(_started.Add);
        wb.Arm();
        return wb;
    }

    private List<long> Started(int expected)
    {
        var list = new List<long>();
        for (var i = 0; i < expected; i++)
        {
            Assert.True(_started.TryTake(out var offset, TimeSpan.FromSeconds(5)), $"only {i} of {expected} windows started");
            list.Add(offset);
        }

        Assert.False(_started.TryTake(out var extra, TimeSpan.FromMilliseconds(100)), $"window {extra} started too");
        list.Sort();
        return list;
    }

    [Fact]
    public void ASequentialStreamStartsEachWindowOnceFilled()
    {
        var wb = Create();
        const int chunk = 1024 * 1024;
        for (long off = 0; off < 2 * Window + 5 * chunk; off += chunk)
        {
            wb.Wrote(off, chunk);
        }

        Assert.Equal([0, Window], Started(2));
    }

    [Fact]
    public void ReorderedWritesAndWritesAcrossWindowsCount()
    {
        var wb = Create();
        const int chunk = 4 * 1024 * 1024;
        var offsets = Enumerable.Range(0, 16).Select(i => (long)i * chunk + Window / 2).Reverse().ToList();
        foreach (var off in offsets)
        {
            wb.Wrote(off, chunk);
        }

        // Half of window 0, all of window 1, half of window 2: only window 1 is full.
        Assert.Equal([Window], Started(1));
        wb.Wrote(0, Window / 2);
        Assert.Equal([0], Started(1));
    }

    [Fact]
    public void NothingStartsBeforeItIsArmed()
    {
        var wb = new WriteBehind(_started.Add);
        const int chunk = 1024 * 1024;
        for (long off = 0; off < Window; off += chunk)
        {
            wb.Wrote(off, chunk);
        }

        Assert.Empty(Started(0));

        // The window filled before arming stays unstarted; the next one starts.
        wb.Arm();
        for (var off = Window; off < 2 * Window; off += chunk)
        {
            wb.Wrote(off, chunk);
        }

        Assert.Equal([Window], Started(1));
    }

    [Fact]
    public void SmallWritesAreNotCounted()
    {
        var wb = Create();
        for (long off = 0; off < Window; off += 4096)
        {
            wb.Wrote(off, 4096);
        }

        Assert.Empty(Started(0));
    }

    [Fact]
    public void ScatteredWritesStartNothingAndStayBounded()
    {
        var wb = Create();
        for (long w = 0; w < 5000; w++)
        {
            wb.Wrote(w * Window, WriteBehind.MinWrite);
        }

        // Writes all over the file fill no window; the counts were dropped on the way, so finishing
        // the first window now does not start it either.
        wb.Wrote(WriteBehind.MinWrite, Window - WriteBehind.MinWrite);
        Assert.Empty(Started(0));
    }

    [Fact]
    public void AWindowIsWrittenBehindOnlyOnce()
    {
        var wb = Create();
        const int chunk = 1024 * 1024;
        for (var pass = 0; pass < 3; pass++)
        {
            for (long off = 0; off < 2 * Window; off += chunk)
            {
                wb.Wrote(off, chunk);
            }
        }

        Assert.Equal([0, Window], Started(2));
        wb.Wrote(200 * Window, Window);
        Assert.Equal([200 * Window], Started(1));
    }

    /// <summary>A window far out in a huge sparse file costs no more bookkeeping than one at the start.</summary>
    [Fact]
    public void AWindowFarOutIsTrackedLikeAnyOther()
    {
        var wb = Create();
        var far = (1L << 60) / Window * Window;
        wb.Wrote(far, Window);
        wb.Wrote(far, Window);
        Assert.Equal([far], Started(1));
    }
}
