namespace ExportServer.Block.Core;

/// <summary>Per-node I/O counters, the source of query-blockstats. Updated with interlocked adds.</summary>
public sealed class BlockStats
{
    private long _readBytes, _writeBytes, _readOps, _writeOps, _flushOps, _discardOps, _discardBytes, _zeroOps, _zeroBytes, _failedOps;

    public long ReadBytes => Volatile.Read(ref _readBytes);
    public long WriteBytes => Volatile.Read(ref _writeBytes);
    public long ReadOps => Volatile.Read(ref _readOps);
    public long WriteOps => Volatile.Read(ref _writeOps);
    public long FlushOps => Volatile.Read(ref _flushOps);
    public long DiscardOps => Volatile.Read(ref _discardOps);
    public long DiscardBytes => Volatile.Read(ref _discardBytes);
    public long ZeroOps => Volatile.Read(ref _zeroOps);
    public long ZeroBytes => Volatile.Read(ref _zeroBytes);
    public long FailedOps => Volatile.Read(ref _failedOps);

    internal void Read(long bytes) { Interlocked.Increment(ref _readOps); Interlocked.Add(ref _readBytes, bytes); }
    internal void Write(long bytes) { Interlocked.Increment(ref _writeOps); Interlocked.Add(ref _writeBytes, bytes); }
    internal void Flush() => Interlocked.Increment(ref _flushOps);
    internal void Discard(long bytes) { Interlocked.Increment(ref _discardOps); Interlocked.Add(ref _discardBytes, bytes); }
    internal void Zero(long bytes) { Interlocked.Increment(ref _zeroOps); Interlocked.Add(ref _zeroBytes, bytes); }
    internal void Failed() => Interlocked.Increment(ref _failedOps);
}
