using System.Numerics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

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

    /// <summary>Granules marked dirty.</summary>
    public long DirtyGranules
    {
        get
        {
            lock (_gate)
            {
                return _count;
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

    /// <summary>Clears every granule.</summary>
    public void Clear()
    {
        lock (_gate)
        {
            Array.Clear(_bits);
            _count = 0;
        }
    }

    /// <summary>
    /// The run of granules in the same state that starts at <paramref name="offset"/>, at most
    /// <paramref name="maxLength"/> bytes and clipped to the length: its length in bytes and whether it is dirty.
    /// </summary>
    public (long Length, bool Dirty) Extent(long offset, long maxLength)
    {
        lock (_gate)
        {
            var end = Math.Min(offset + maxLength, Length);
            var g = offset / Granularity;
            var dirty = Test(g);
            var next = g + 1;
            var last = (end + Granularity - 1) / Granularity;
            while (next < last)
            {
                var word = _bits[next >> 6];
                if ((next & 63) == 0 && word == (dirty ? ulong.MaxValue : 0UL))
                {
                    next += 64;
                    continue;
                }

                if (Test(next) != dirty)
                {
                    break;
                }

                next++;
            }

            return (Math.Min(next * Granularity, end) - offset, dirty);
        }
    }

    /// <summary>
    /// Sets in this bitmap every granule that is dirty in <paramref name="source"/> (same length, any
    /// granularity: a coarser or finer source marks the granules its dirty runs touch).
    /// </summary>
    public void Merge(DirtyBitmap source)
    {
        if (ReferenceEquals(source, this))
        {
            return;
        }

        if (source.Granularity == Granularity)
        {
            var words = source.SnapshotWords();
            lock (_gate)
            {
                for (var i = 0; i < words.Length; i++)
                {
                    _bits[i] |= words[i];
                }

                Recount();
            }

            return;
        }

        var from = 0L;
        while (source.NextDirty(from, long.MaxValue) is { } run)
        {
            Set(run.Offset, run.Length);
            from = run.Offset + run.Length;
        }
    }

    /// <summary>
    /// Copies the bitmap as bytes, granule i at bit i % 8 of byte i / 8 (the order of QEMU's
    /// serialised bitmaps and of qcow2's bitmap data), from byte <paramref name="byteOffset"/>; bytes
    /// past the last granule read as zero.
    /// </summary>
    public void ReadBytes(long byteOffset, Span<byte> destination)
    {
        destination.Clear();
        lock (_gate)
        {
            var all = MemoryMarshal.AsBytes(_bits.AsSpan());
            if (byteOffset < all.Length)
            {
                var n = (int)Math.Min(destination.Length, all.Length - byteOffset);
                all.Slice((int)byteOffset, n).CopyTo(destination);
            }
        }
    }

    /// <summary>Replaces the bits from byte <paramref name="byteOffset"/> with <paramref name="source"/> (as <see cref="ReadBytes"/> lays them out).</summary>
    public void WriteBytes(long byteOffset, ReadOnlySpan<byte> source)
    {
        lock (_gate)
        {
            var all = MemoryMarshal.AsBytes(_bits.AsSpan());
            if (byteOffset >= all.Length)
            {
                return;
            }

            var n = (int)Math.Min(source.Length, all.Length - byteOffset);
            source[..n].CopyTo(all.Slice((int)byteOffset, n));
            var tail = (int)(GranuleCount & 63);
            if (tail != 0)
            {
                _bits[^1] &= (1UL << tail) - 1;
            }

            Recount();
        }
    }

    /// <summary>
    /// SHA-256 of the bits as QEMU's x-debug-block-dirty-bitmap-sha256 hashes them: the granules as
    /// 64-bit little-endian words, at least one word, in lower-case hex.
    /// </summary>
    public string Sha256()
    {
        var words = SnapshotWords();
        if (words.Length == 0)
        {
            words = new ulong[1];
        }

        return Convert.ToHexStringLower(SHA256.HashData(MemoryMarshal.AsBytes(words.AsSpan())));
    }

    /// <summary>A bitmap of the same granularity over <paramref name="length"/> bytes with this one's bits (those past the new end dropped).</summary>
    public DirtyBitmap Resized(long length)
    {
        var copy = new DirtyBitmap(length, Granularity);
        var words = SnapshotWords();
        Array.Copy(words, copy._bits, Math.Min(words.Length, copy._bits.Length));
        var tail = (int)(copy.GranuleCount & 63);
        if (tail != 0 && copy._bits.Length > 0)
        {
            copy._bits[^1] &= (1UL << tail) - 1;
        }

        copy.Recount();
        return copy;
    }

    private ulong[] SnapshotWords()
    {
        lock (_gate)
        {
            return (ulong[])_bits.Clone();
        }
    }

    private void Recount()
    {
        long count = 0;
        foreach (var w in _bits)
        {
            count += BitOperations.PopCount(w);
        }

        _count = count;
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
