using System.Buffers;
using System.Numerics;

namespace ExportServer.Nbd.Server;

/// <summary>
/// The pool behind <see cref="NbdBuffers"/>: it keeps the arrays that traffic keeps reusing and gives
/// the rest back once the traffic is gone, so a burst (many large requests in flight, or a client
/// sending hostile lengths) does not leave the daemon holding its memory.
/// <list type="bullet">
/// <item>Arrays are a power of two plus <see cref="Slack"/> bytes long: a power-of-two request and its
/// reply header fit one array, instead of one twice as large.</item>
/// <item>Each bucket keeps at most <see cref="MaxPerBucket"/> arrays (a connection's requests in
/// flight, twice over) and at most 128 MiB (four arrays of a 32 MiB request); beyond that a returned
/// array is left to the collector. Every trim period (a second in the daemon), each bucket drops the
/// arrays that lay unused through the whole period (its low-water mark); once the pool has been idle
/// for a period and dropped arrays, or after large arrays were handed out (one whose connection was
/// cut mid-reply is never returned), a collection returns their pages to the system (large arrays
/// are freed only by a full collection). Not pooling large arrays at all was worse: each 32 MiB request
/// then left a fresh array for the next full collection, and the daemon grew to hundreds of MiB.</item>
/// </list>
/// </summary>
internal sealed class NbdBufferPool : ArrayPool<byte>
{
    /// <summary>Room for the largest reply header in front of a power-of-two payload (extended chunk header and offset: 40 bytes).</summary>
    public const int Slack = 64;

    private const int MinShift = 9;
    private const int MaxPooledShift = 25;
    private const int MaxPerBucket = 128;
    private const long MaxBucketBytes = 128L << 20;
    private const long CollectAfterDroppedBytes = 1 << 20;

    /// <summary>Arrays from 1 MiB up count as large (see <see cref="_largeSinceCollect"/>).</summary>
    private const int LargeShift = 20;

    private readonly Bucket[] _buckets;
    private readonly Timer _trimTimer;
    private readonly TimeSpan _trimPeriod;
    private int _trimArmed;
    private bool _used;

    /// <summary>A large array was handed out since the last collection: it may lie unreturned (its connection was cut) until one.</summary>
    private bool _largeSinceCollect;

    /// <param name="trimPeriod">How often unused arrays are let go (infinite: only when <see cref="Trim"/> is called).</param>
    public NbdBufferPool(TimeSpan trimPeriod)
    {
        _trimPeriod = trimPeriod;
        _buckets = new Bucket[MaxPooledShift - MinShift + 1];
        for (var i = 0; i < _buckets.Length; i++)
        {
            _buckets[i] = new Bucket((1 << (MinShift + i)) + Slack);
        }

        _trimTimer = new Timer(static s => ((NbdBufferPool)s!).Trim(), this, Timeout.Infinite, Timeout.Infinite);
    }

    /// <summary>Arrays pooled in this process now, in bytes (for tests).</summary>
    public long RetainedBytes => _buckets.Sum(b => (long)b.Count * b.ArrayLength);

    public override byte[] Rent(int minimumLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(minimumLength);
        if (minimumLength == 0)
        {
            return [];
        }

        var shift = ShiftFor(minimumLength);
        _used = true;
        if (shift >= LargeShift)
        {
            _largeSinceCollect = true;
            ArmTrim();
        }

        if (shift > MaxPooledShift)
        {
            return GC.AllocateUninitializedArray<byte>(minimumLength);
        }

        var bucket = _buckets[shift - MinShift];
        return bucket.TryPop() ?? GC.AllocateUninitializedArray<byte>(bucket.ArrayLength);
    }

    public override void Return(byte[] array, bool clearArray = false)
    {
        ArgumentNullException.ThrowIfNull(array);
        var shift = array.Length > Slack ? BitOperations.Log2((uint)(array.Length - Slack)) : 0;
        if (shift < MinShift || shift > MaxPooledShift || array.Length != (1 << shift) + Slack)
        {
            // Not one of the pooled sizes (a large request's array): the collector takes it.
            return;
        }

        if (clearArray)
        {
            Array.Clear(array);
        }

        _buckets[shift - MinShift].TryPush(array);
        ArmTrim();
    }

    private void ArmTrim()
    {
        if (Volatile.Read(ref _trimArmed) == 0 && Interlocked.Exchange(ref _trimArmed, 1) == 0)
        {
            _trimTimer.Change(_trimPeriod, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>The bucket whose arrays hold <paramref name="length"/> bytes: the smallest 2^k + Slack that does.</summary>
    private static int ShiftFor(int length) =>
        length <= (1 << MinShift) + Slack ? MinShift : BitOperations.Log2((uint)(length - Slack - 1)) + 1;

    /// <summary>Runs every trim period while the pool holds or hands out arrays (internal for tests).</summary>
    internal void Trim()
    {
        var used = _used;
        _used = false;
        long dropped = 0;
        var retained = 0;
        foreach (var bucket in _buckets)
        {
            dropped += (long)bucket.TrimUnused() * bucket.ArrayLength;
            retained += bucket.Count;
        }

        if (!used && (dropped >= CollectAfterDroppedBytes || _largeSinceCollect))
        {
            // Aggressive: the collector also gives the freed regions back to the system at once;
            // otherwise the pages of a 32 MiB array stayed resident long after it was freed.
            _largeSinceCollect = false;
            GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        }

        // Keep ticking while there is something to watch; the next Rent or Return arms the timer again.
        Volatile.Write(ref _trimArmed, 0);
        if ((used || retained > 0 || _largeSinceCollect) && Interlocked.Exchange(ref _trimArmed, 1) == 0)
        {
            _trimTimer.Change(_trimPeriod, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>A stack of arrays of one length, with the fewest it held since the last trim.</summary>
    private sealed class Bucket(int arrayLength)
    {
        private readonly Lock _lock = new();
        private readonly byte[]?[] _items = new byte[(int)Math.Clamp(MaxBucketBytes / arrayLength, 2, MaxPerBucket)][];
        private int _count;
        private int _lowWater;

        public int ArrayLength { get; } = arrayLength;

        public int Count => Volatile.Read(ref _count);

        public byte[]? TryPop()
        {
            lock (_lock)
            {
                if (_count == 0)
                {
                    _lowWater = 0;
                    return null;
                }

                var array = _items[--_count];
                _items[_count] = null;
                _lowWater = Math.Min(_lowWater, _count);
                return array;
            }
        }

        public void TryPush(byte[] array)
        {
            lock (_lock)
            {
                if (_count < _items.Length)
                {
                    _items[_count++] = array;
                }
            }
        }

        /// <summary>Drops the arrays that stayed unused since the last trim; returns how many.</summary>
        public int TrimUnused()
        {
            lock (_lock)
            {
                var drop = _lowWater;
                for (var i = 0; i < drop; i++)
                {
                    _items[--_count] = null;
                }

                _lowWater = _count;
                return drop;
            }
        }
    }
}
