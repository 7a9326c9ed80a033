namespace ExportServer.Block.Bitmaps;

/// <summary>
/// An in-memory dirty bitmap over a byte range: one bit per <see cref="Granularity"/> bytes, a
/// range is dirty when any of its bits is set. Thread-safe; writers mark, copiers claim and clear.
/// </summary>
public sealed class DirtyBitmap
{
    private readonly ulong[] _bits;
    private readonly object _gate = new();
    private long _count;

    /// <param name="length">Bytes covered; the last granule may be partial.</param>
    /// <param name="granularity">A power of two, at least 512.</param>
    public DirtyBitmap(long length, long granularity)
    {
        if (granularity < 512 || (granularity & (granularity - 1)) != 0)
        {
            throw new ArgumentException($"granularity {granularity} must be a power of two of at least 512", nameof(granularity));
        }

        Length = length;
        Granularity = granularity;
        GranuleCount = (length + granularity - 1) / granularity;
        _bits = new ulong[(GranuleCount + 63) / 64];
    }

    public long Length { get; }

    public long Granularity { get; }

    public long GranuleCount { get; }

    /// <summary>Bytes marked dirty (whole granules, the last one clipped to the length).</summary>
    public long DirtyBytes
    {
        get
        {
            lock (_gate)
            {
                var bytes = _count * Granularity;
                if (GranuleCount > 0 && Test(GranuleCount - 1))
                {
                    bytes -= GranuleCount * Granularity - Length;
                }

                return bytes;
            }
        }
    }

    public bool IsEmpty
    {
        get
        {
            lock (_gate)
            {
                return _count == 0;
            }
        }
    }

    /// <summary>Marks every granule that [offset, offset+length) touches.</summary>
    public void Set(long offset, long length) => Update(offset, length, true);

    /// <summary>Clears every granule that [offset, offset+length) touches.</summary>
    public void Reset(long offset, long length) => Update(offset, length, false);

    public void SetAll() => Set(0, Length);

    public bool IsDirty(long offset)
    {
        lock (_gate)
        {
            return Test(offset / Granularity);
        }
    }

    /// <summary>
    /// The first dirty run at or after <paramref name="from"/>, at most <paramref name="maxLength"/>
    /// bytes (rounded down to whole granules, at least one), clipped to the length; null when clean.
    /// </summary>
    public (long Offset, long Length)? NextDirty(long from, long maxLength)
    {
        lock (_gate)
        {
            if (_count == 0)
            {
                return null;
            }

            var g = Math.Max(from, 0) / Granularity;
            while (g < GranuleCount && !Test(g))
            {
                if ((g & 63) == 0 && _bits[g >> 6] == 0)
                {
                    g += 64;
                    continue;
                }

                g++;
            }

            if (g >= GranuleCount)
            {
                return null;
            }

            var maxGranules = Math.Max(1, maxLength / Granularity);
            var end = g + 1;
            while (end < GranuleCount && end - g < maxGranules && Test(end))
            {
                end++;
            }

            var start = g * Granularity;
            return (start, Math.Min(end * Granularity, Length) - start);
        }
    }

    /// <summary>Clears and returns the dirty runs inside [offset, offset+length) (granule-aligned, clipped).</summary>
    public List<(long Offset, long Length)> Claim(long offset, long length)
    {
        var runs = new List<(long, long)>();
        lock (_gate)
        {
            var first = offset / Granularity;
            var last = Math.Min((offset + length + Granularity - 1) / Granularity, GranuleCount);
            var g = first;
            while (g < last)
            {
                if (!Test(g))
                {
                    g++;
                    continue;
                }

                var end = g;
                while (end < last && Test(end))
                {
                    Flip(end, false);
                    end++;
                }

                var start = g * Granularity;
                runs.Add((start, Math.Min(end * Granularity, Length) - start));
                g = end;
            }
        }

        return runs;
    }

    private void Update(long offset, long length, bool value)
    {
        if (length <= 0)
        {
            return;
        }

        lock (_gate)
        {
            var first = Math.Max(offset, 0) / Granularity;
            var last = Math.Min((offset + length + Granularity - 1) / Granularity, GranuleCount);
            for (var g = first; g < last; g++)
            {
                Flip(g, value);
            }
        }
    }

    private bool Test(long g) => (_bits[g >> 6] & (1UL << (int)(g & 63))) != 0;

    private void Flip(long g, bool value)
    {
        var mask = 1UL << (int)(g & 63);
        ref var word = ref _bits[g >> 6];
        if (((word & mask) != 0) == value)
        {
            return;
        }

        word ^= mask;
        _count += value ? 1 : -1;
    }
}
