using System.Buffers;
using System.Runtime.CompilerServices;

namespace ExportServer.Block.Core;

/// <summary>
/// The common I/O path: the public, non-virtual request methods and the driver hooks. The request
/// methods reuse their state machines (pooled builders): a request that waits for the disk would
/// otherwise leave one object per method behind, and at a few thousand such requests a second the
/// garbage grew the heap by megabytes before each collection.
/// </summary>
public abstract partial class BlockNode
{
    private const int ZeroChunk = 1024 * 1024;
    private static readonly byte[] s_zeroes = new byte[ZeroChunk];
    private RangeLock? _rmwLock;

    /// <summary>Serialises overlapping read-modify-write cycles; created only for nodes that need alignment.</summary>
    private RangeLock RmwLock => LazyInitializer.EnsureInitialized(ref _rmwLock);

    // ---- driver contract -------------------------------------------------------------------

    protected abstract ValueTask ReadCoreAsync(long offset, Memory<byte> buffer);

    protected abstract ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags);

    /// <summary>Makes the range read as zeroes without transferring data; throw ENOTSUP to make the engine fall back.</summary>
    protected virtual ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags) =>
        throw BlockException.NotSupported("write zeroes not supported");

    /// <summary>Advisory: may free the range. The default does nothing.</summary>
    protected virtual ValueTask DiscardCoreAsync(long offset, long length) => ValueTask.CompletedTask;

    /// <summary>Default: flush every child, in order.</summary>
    protected virtual async ValueTask FlushCoreAsync()
    {
        foreach (var c in Children)
        {
            await c.Node.FlushAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Tells the node and everything under it that a stream of writes is coming that will be flushed
    /// at its end (a block job's target), so that a driver can start writing back early.
    /// </summary>
    public void ExpectFlushedStream()
    {
        OnFlushedStreamExpected();
        foreach (var c in Children)
        {
            c.Node.ExpectFlushedStream();
        }
    }

    /// <summary>Default: nothing.</summary>
    protected virtual void OnFlushedStreamExpected()
    {
    }

    /// <summary>Status of this layer only, from <paramref name="offset"/>; the answer may cover less than asked.</summary>
    protected virtual ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length) =>
        ValueTask.FromResult(new BlockStatus(length, BlockStatusFlags.Data | BlockStatusFlags.Allocated));

    protected virtual ValueTask TruncateCoreAsync(long length) =>
        throw BlockException.NotSupported($"Node '{NodeName}' ({DriverName}) cannot be resized");

    // ---- the common path -------------------------------------------------------------------

    private void CheckRange(long offset, long length, Errno beyondEnd)
    {
        if (offset < 0 || length < 0)
        {
            throw new BlockException(Errno.EINVAL, "negative offset or length");
        }

        if (offset > Length || length > Length - offset)
        {
            throw new BlockException(beyondEnd, $"request [{offset}, +{length}) beyond end of node '{NodeName}' ({Length} bytes)");
        }
    }

    private void CheckWritable()
    {
        if (IsReadOnly)
        {
            throw new BlockException(Errno.EPERM, $"Node '{NodeName}' is read-only");
        }
    }

    private bool IsAligned(long offset, long length)
    {
        var a = Limits.RequestAlignment;
        return a <= 1 || ((offset | length) & (a - 1)) == 0;
    }

    /// <summary>
    /// Instead of a read, the file extent where [offset, offset+length) lies as it is (see
    /// <see cref="FileExtent"/>); false when the node's driver cannot say (any format with its own
    /// layout, a filter, direct I/O) or the node is drained, and the caller reads as usual. The
    /// bytes count as read; they are the file's when the caller sends them, which for a client is
    /// no different from a read that ran that late.
    /// </summary>
    public bool TryLeaseFileExtent(long offset, int length, out FileExtent extent)
    {
        extent = default;
        CheckRange(offset, length, Errno.EINVAL);
        if (length == 0 || this is not IFileExtentSource source || !TryEnter())
        {
            return false;
        }

        try
        {
            if (!source.TryLeaseExtent(offset, length, out extent))
            {
                return false;
            }

            Stats.Read(length);
            return true;
        }
        finally
        {
            Leave();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask ReadAsync(long offset, Memory<byte> buffer)
    {
        CheckRange(offset, buffer.Length, Errno.EINVAL);
        if (buffer.Length == 0)
        {
            return;
        }

        if (!TryEnter())
        {
            await EnterHeldAsync().ConfigureAwait(false);
        }

        try
        {
            if (IsAligned(offset, buffer.Length))
            {
                await ReadSplitAsync(offset, buffer).ConfigureAwait(false);
            }
            else
            {
                await ReadUnalignedAsync(offset, buffer).ConfigureAwait(false);
            }

            Stats.Read(buffer.Length);
        }
        catch
        {
            Stats.Failed();
            throw;
        }
        finally
        {
            Leave();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadSplitAsync(long offset, Memory<byte> buffer)
    {
        var max = MaxTransferAligned();
        while (buffer.Length > 0)
        {
            var n = Math.Min(buffer.Length, max);
            await ReadCoreAsync(offset, buffer[..n]).ConfigureAwait(false);
            offset += n;
            buffer = buffer[n..];
        }
    }

    private int MaxTransferAligned()
    {
        var a = Math.Max(Limits.RequestAlignment, 1);
        return Math.Max(Limits.MaxTransfer / a * a, a);
    }

    private (long Start, int Length) AlignOut(long offset, long length)
    {
        long a = Limits.RequestAlignment;
        var start = offset / a * a;
        var end = (offset + length + a - 1) / a * a;
        if (end - start > int.MaxValue)
        {
            throw new BlockException(Errno.EOVERFLOW, "request too large");
        }

        return (start, (int)(end - start));
    }

    private async ValueTask ReadUnalignedAsync(long offset, Memory<byte> buffer)
    {
        var (start, len) = AlignOut(offset, buffer.Length);
        using var bounce = new AlignedBuffer(len, Math.Max(Limits.MemoryAlignment, Limits.RequestAlignment));
        await ReadSplitAsync(start, bounce.Memory).ConfigureAwait(false);
        bounce.Memory.Span.Slice((int)(offset - start), buffer.Length).CopyTo(buffer.Span);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags = WriteFlags.None)
    {
        CheckWritable();
        CheckRange(offset, buffer.Length, Errno.ENOSPC);
        if ((flags & WriteFlags.Compressed) != 0 && CompressedWriteSize == 0)
        {
            throw BlockException.NotSupported($"Node '{NodeName}' ({DriverName}) does not support compressed writes");
        }

        if (buffer.Length == 0)
        {
            return;
        }

        if (!TryEnter())
        {
            await EnterHeldAsync().ConfigureAwait(false);
        }

        try
        {
            if (!WriteNotifiers.IsEmpty)
            {
                await WriteNotifiers.InvokeAsync(this, offset, buffer.Length).ConfigureAwait(false);
            }

            if (IsDetectedZeroWrite(buffer.Span, flags, out var zeroFlags))
            {
                await WriteZeroesAlignedAsync(offset, buffer.Length, zeroFlags).ConfigureAwait(false);
            }
            else if (IsAligned(offset, buffer.Length))
            {
                await WriteSplitAsync(offset, buffer, flags).ConfigureAwait(false);
            }
            else
            {
                await WriteUnalignedAsync(offset, buffer, flags).ConfigureAwait(false);
            }

            if (!WrittenNotifiers.IsEmpty)
            {
                await WrittenNotifiers.InvokeAsync(this, offset, buffer.Length).ConfigureAwait(false);
            }

            Stats.Write(buffer.Length);
        }
        catch
        {
            Stats.Failed();
            throw;
        }
        finally
        {
            if (Volatile.Read(ref _bitmaps).Length != 0)
            {
                MarkDirty(offset, buffer.Length);
            }

            Leave();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteSplitAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        var fua = (flags & WriteFlags.Fua) != 0;
        var driverFlags = (fua && SupportsFua ? WriteFlags.Fua : WriteFlags.None) | (flags & WriteFlags.Compressed);
        var max = MaxTransferAligned();
        while (buffer.Length > 0)
        {
            var n = Math.Min(buffer.Length, max);
            await WriteCoreAsync(offset, buffer[..n], driverFlags).ConfigureAwait(false);
            offset += n;
            buffer = buffer[n..];
        }

        if (fua && !SupportsFua)
        {
            await FlushCoreAsync().ConfigureAwait(false);
        }
    }

    private async ValueTask WriteUnalignedAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        var (start, len) = AlignOut(offset, buffer.Length);
        using var region = await RmwLock.AcquireAsync(start, len).ConfigureAwait(false);
        using var bounce = new AlignedBuffer(len, Math.Max(Limits.MemoryAlignment, Limits.RequestAlignment));
        var a = Limits.RequestAlignment;

        // Only the first and last alignment units can be partial; read just those.
        await ReadCoreAsync(start, bounce.Memory[..a]).ConfigureAwait(false);
        if (len > a)
        {
            await ReadCoreAsync(start + len - a, bounce.Memory[(len - a)..]).ConfigureAwait(false);
        }

        buffer.Span.CopyTo(bounce.Memory.Span[(int)(offset - start)..]);
        await WriteSplitAsync(start, bounce.Memory, flags).ConfigureAwait(false);
    }

    /// <summary>
    /// Makes [offset, offset+length) read as zeroes. Without driver support, or when the driver
    /// refuses this particular range, zero buffers are written unless <see cref="ZeroFlags.NoFallback"/>.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteZeroesAsync(long offset, long length, ZeroFlags flags = ZeroFlags.None)
    {
        CheckWritable();
        CheckRange(offset, length, Errno.ENOSPC);
        if (length == 0)
        {
            return;
        }

        if (!TryEnter())
        {
            await EnterHeldAsync().ConfigureAwait(false);
        }

        try
        {
            if (!WriteNotifiers.IsEmpty)
            {
                await WriteNotifiers.InvokeAsync(this, offset, length).ConfigureAwait(false);
            }

            await WriteZeroesAlignedAsync(offset, length, flags).ConfigureAwait(false);
            if (!WrittenNotifiers.IsEmpty)
            {
                await WrittenNotifiers.InvokeAsync(this, offset, length).ConfigureAwait(false);
            }

            Stats.Zero(length);
        }
        catch
        {
            Stats.Failed();
            throw;
        }
        finally
        {
            if (Volatile.Read(ref _bitmaps).Length != 0)
            {
                MarkDirty(offset, length);
            }

            Leave();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteZeroesAlignedAsync(long offset, long length, ZeroFlags flags)
    {
        var fast = (flags & ZeroFlags.NoFallback) != 0;
        var writeFlags = (flags & ZeroFlags.Fua) != 0 ? WriteFlags.Fua : WriteFlags.None;
        long a = Math.Max(Limits.RequestAlignment, 1);
        var headEnd = Math.Min((offset + a - 1) / a * a, offset + length);
        var tailStart = Math.Max((offset + length) / a * a, headEnd);

        if (SupportsWriteZeroes && tailStart > headEnd)
        {
            // As QEMU's bdrv_co_do_pwrite_zeroes: FUA goes down with the request where the driver
            // takes it, else one flush follows.
            var nativeFua = (flags & ZeroFlags.Fua) != 0 && SupportsFua;
            var partFlags = nativeFua ? WriteFlags.Fua : WriteFlags.None;
            try
            {
                await WriteZeroesCoreAsync(headEnd, tailStart - headEnd, nativeFua ? flags : flags & ~ZeroFlags.Fua).ConfigureAwait(false);
                if (headEnd > offset)
                {
                    await WriteZeroBuffersAsync(offset, headEnd - offset, partFlags).ConfigureAwait(false);
                }

                if (offset + length > tailStart)
                {
                    await WriteZeroBuffersAsync(tailStart, offset + length - tailStart, partFlags).ConfigureAwait(false);
                }

                if ((flags & ZeroFlags.Fua) != 0 && !nativeFua)
                {
                    await FlushCoreAsync().ConfigureAwait(false);
                }

                return;
            }
            catch (BlockException e) when (e.Errno == Errno.ENOTSUP && !fast)
            {
                // The driver cannot zero this range efficiently: fall back to writing zeroes.
            }
        }
        else if (fast)
        {
            throw BlockException.NotSupported($"Node '{NodeName}' cannot write zeroes quickly");
        }

        await WriteZeroBuffersAsync(offset, length, writeFlags).ConfigureAwait(false);
    }

    private async ValueTask WriteZeroBuffersAsync(long offset, long length, WriteFlags flags)
    {
        while (length > 0)
        {
            var n = (int)Math.Min(length, ZeroChunk);
            if (IsAligned(offset, n))
            {
                await WriteSplitAsync(offset, s_zeroes.AsMemory(0, n), flags).ConfigureAwait(false);
            }
            else
            {
                await WriteUnalignedAsync(offset, s_zeroes.AsMemory(0, n), flags).ConfigureAwait(false);
            }

            offset += n;
            length -= n;
        }
    }

    /// <summary>Advisory discard; the part not aligned to the discard granularity is left alone.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask DiscardAsync(long offset, long length)
    {
        CheckWritable();
        CheckRange(offset, length, Errno.ENOSPC);
        long g = Math.Max(Math.Max(Limits.DiscardGranularity, Limits.RequestAlignment), 1);
        var start = (offset + g - 1) / g * g;
        var end = (offset + length) / g * g;
        if (end <= start)
        {
            // The driver is not asked, but the range counts as discarded (QEMU marks it dirty all the same).
            if (DiscardUnmap && length > 0 && Volatile.Read(ref _bitmaps).Length != 0)
            {
                MarkDirty(offset, length);
            }

            return;
        }

        if (!TryEnter())
        {
            await EnterHeldAsync().ConfigureAwait(false);
        }

        try
        {
            if (!WriteNotifiers.IsEmpty)
            {
                await WriteNotifiers.InvokeAsync(this, start, end - start).ConfigureAwait(false);
            }

            await DiscardCoreAsync(start, end - start).ConfigureAwait(false);
            if (!WrittenNotifiers.IsEmpty)
            {
                await WrittenNotifiers.InvokeAsync(this, start, end - start).ConfigureAwait(false);
            }

            Stats.Discard(end - start);
        }
        catch
        {
            Stats.Failed();
            throw;
        }
        finally
        {
            if (DiscardUnmap && Volatile.Read(ref _bitmaps).Length != 0)
            {
                MarkDirty(offset, length);
            }

            Leave();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask FlushAsync()
    {
        if (!TryEnter())
        {
            await EnterHeldAsync().ConfigureAwait(false);
        }

        try
        {
            await FlushCoreAsync().ConfigureAwait(false);
            Stats.Flush();
        }
        catch
        {
            Stats.Failed();
            throw;
        }
        finally
        {
            Leave();
        }
    }

    /// <summary>Status of this layer for a prefix of [offset, offset+length); never empty, never beyond the end.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<BlockStatus> GetBlockStatusAsync(long offset, long length)
    {
        CheckRange(offset, length, Errno.EINVAL);
        if (length == 0)
        {
            throw BlockException.Invalid("block status of an empty range");
        }

        if (!TryEnter())
        {
            await EnterHeldAsync().ConfigureAwait(false);
        }

        try
        {
            var s = await GetBlockStatusCoreAsync(offset, length).ConfigureAwait(false);
            if (s.Length <= 0 || s.Length > length)
            {
                s = s with { Length = s.Length <= 0 ? Math.Min(length, Math.Max(Limits.RequestAlignment, 1)) : length };
            }

            return s;
        }
        finally
        {
            Leave();
        }
    }

    /// <summary>
    /// Status through the backing chain, like QEMU's block_status_above: where this layer leaves a range
    /// unallocated, the backing node answers; past the end of the chain the range reads as zeroes.
    /// <see cref="BlockStatus.Depth"/> says which layer holds it (1 = this node, 0 = none).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<BlockStatus> GetBlockStatusAboveAsync(long offset, long length)
    {
        if (this is ForwardingNode forwarding)
        {
            // A root or a filter is no layer of its own: depths count from the node it forwards to.
            return await forwarding.Target.GetBlockStatusAboveAsync(offset, length).ConfigureAwait(false);
        }

        var node = this;
        var depth = 1;
        while (true)
        {
            var s = await node.GetBlockStatusAsync(offset, length).ConfigureAwait(false);
            if (s.IsAllocated)
            {
                return s with { Depth = depth };
            }

            var backing = node.BackingLayer;
            if (backing is null)
            {
                return new BlockStatus(s.Length, s.Flags | BlockStatusFlags.Zero, 0);
            }

            if (offset >= backing.Length)
            {
                return new BlockStatus(s.Length, BlockStatusFlags.Zero, 0);
            }

            length = Math.Min(s.Length, backing.Length - offset);
            node = backing;
            depth++;
        }
    }

    public async ValueTask TruncateAsync(long length)
    {
        CheckWritable();
        if (length < 0)
        {
            throw BlockException.Invalid("negative size");
        }

        if (!TryEnter())
        {
            await EnterHeldAsync().ConfigureAwait(false);
        }

        try
        {
            await TruncateCoreAsync(length).ConfigureAwait(false);
            if (Volatile.Read(ref _bitmaps).Length != 0)
            {
                ResizeDirtyBitmaps();
            }
        }
        finally
        {
            Leave();
        }
    }

    /// <summary>Reads through pooled memory; for callers that only need a scratch buffer.</summary>
    public static IMemoryOwner<byte> RentBuffer(int length) => MemoryPool<byte>.Shared.Rent(length);
}
