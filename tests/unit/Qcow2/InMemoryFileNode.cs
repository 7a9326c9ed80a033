using ExportServer.Block.Core;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>
/// A protocol node over an image held in memory, standing in for the "file" driver in unit tests:
/// it has a file name (so relative backing names resolve), grows on truncate, and is safe for
/// concurrent requests (a reader-writer lock guards resizes).
/// </summary>
internal sealed class InMemoryFileNode : BlockNode
{
    private readonly ReaderWriterLockSlim _resize = new();
    private readonly string _fileName;
    private byte[] _data;

    /// <summary>Wraps <paramref name="data"/> (not copied) as the file's contents.</summary>
    public InMemoryFileNode(string nodeName, string fileName, byte[] data, bool readOnly)
        : base(nodeName, readOnly)
    {
        _fileName = fileName;
        _data = data;
        Length = data.Length;
        Capabilities = new BlockCapabilities(Truncate: true);
    }

    public override string DriverName => "file";

    public override string FileName => _fileName;

    public int FlushCount;

    /// <summary>Called before each write reaches the bytes: the contents at that moment are what a crash would leave.</summary>
    public Action<InMemoryFileNode>? BeforeWrite { get; set; }

    /// <summary>A copy of the current contents.</summary>
    public byte[] Snapshot()
    {
        _resize.EnterReadLock();
        try
        {
            return _data.AsSpan(0, (int)Length).ToArray();
        }
        finally
        {
            _resize.ExitReadLock();
        }
    }

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        _resize.EnterReadLock();
        try
        {
            _data.AsSpan((int)offset, buffer.Length).CopyTo(buffer.Span);
        }
        finally
        {
            _resize.ExitReadLock();
        }

        return ValueTask.CompletedTask;
    }

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        BeforeWrite?.Invoke(this);
        _resize.EnterReadLock();
        try
        {
            buffer.Span.CopyTo(_data.AsSpan((int)offset));
        }
        finally
        {
            _resize.ExitReadLock();
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>Bytes punched by discards; a punched range reads as zeroes, like a hole.</summary>
    public long DiscardedBytes;

    protected override ValueTask DiscardCoreAsync(long offset, long length)
    {
        _resize.EnterReadLock();
        try
        {
            _data.AsSpan((int)offset, (int)length).Clear();
        }
        finally
        {
            _resize.ExitReadLock();
        }

        Interlocked.Add(ref DiscardedBytes, length);
        return ValueTask.CompletedTask;
    }

    protected override ValueTask FlushCoreAsync()
    {
        Interlocked.Increment(ref FlushCount);
        return ValueTask.CompletedTask;
    }

    protected override ValueTask TruncateCoreAsync(long length)
    {
        _resize.EnterWriteLock();
        try
        {
            // Capacity grows geometrically so that images growing a cluster at a time stay cheap.
            if (length > _data.Length)
            {
                Array.Resize(ref _data, (int)Math.Min(Math.Max(length, (long)_data.Length * 2), Array.MaxLength));
            }
            else if (length < Length)
            {
                // Bytes beyond the end must read as zeroes when the file grows again.
                _data.AsSpan((int)length, (int)(Length - length)).Clear();
            }

            Length = length;
        }
        finally
        {
            _resize.ExitWriteLock();
        }

        return ValueTask.CompletedTask;
    }
}
