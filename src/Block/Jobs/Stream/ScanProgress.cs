using ExportServer.Block.Bitmaps;

namespace ExportServer.Block.Jobs.Stream;

/// <summary>
/// Progress as QEMU's stream and commit report it: the length is the whole image and the offset
/// passes over every range, copied or not, so a finished job has offset = len = image length.
/// Copies count as the engine makes them; a range that needs no copy counts once the copy pass has
/// moved beyond it (the lowest range still dirty lies above it), so the offset rises as the pass
/// walks the image, and <see cref="Finish"/> counts what is left.
/// </summary>
internal sealed class ScanProgress
{
    private readonly DirtyBitmap _bitmap;
    private readonly JobControl _control;
    private readonly List<(long Offset, long Length)> _clean = new();
    private readonly object _gate = new();
    private int _next;
    private long _low;

    /// <summary>Takes the ranges <paramref name="bitmap"/> leaves clean after the scan, and sets the job's length.</summary>
    public ScanProgress(DirtyBitmap bitmap, JobControl control)
    {
        _bitmap = bitmap;
        _control = control;
        long at = 0;
        for (var run = bitmap.NextDirty(0, long.MaxValue); run is { } r; run = bitmap.NextDirty(r.Offset + r.Length, long.MaxValue))
        {
            if (r.Offset > at)
            {
                _clean.Add((at, r.Offset - at));
            }

            at = r.Offset + r.Length;
        }

        if (bitmap.Length > at)
        {
            _clean.Add((at, bitmap.Length - at));
        }

        control.SetLength(bitmap.Length);
    }

    /// <summary>After a copy: counts the ranges without copy that lie below the lowest dirty range.</summary>
    public void Advance()
    {
        lock (_gate)
        {
            _low = _bitmap.NextDirty(_low, _bitmap.Granularity)?.Offset ?? _bitmap.Length;
            CountBelow(_low);
        }
    }

    /// <summary>Once the pass is over: counts every range without copy not counted yet.</summary>
    public void Finish()
    {
        lock (_gate)
        {
            CountBelow(_bitmap.Length);
        }
    }

    private void CountBelow(long limit)
    {
        while (_next < _clean.Count && _clean[_next].Offset < limit)
        {
            var (offset, length) = _clean[_next];
            var counted = Math.Min(offset + length, limit) - offset;
            _control.AddProgress(counted);
            if (counted == length)
            {
                _next++;
            }
            else
            {
                _clean[_next] = (limit, length - counted);
            }
        }
    }
}
