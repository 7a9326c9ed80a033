using System.Buffers;
using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Parallels;

/// <summary>
/// A Parallels image as a block node: guest clusters mapped through the BAT (in memory whole; the
/// file holds it whole, so its size bounds the memory). An unmapped cluster reads from the backing
/// node, or as zeroes. A new cluster goes at the end of the data (QEMU's data_end); the file grows
/// ahead of it by prealloc-size, by zeroes (falloc) or a truncate, and is cut back to the data at
/// close. Opened for writing, the header is marked in use at once (QEMU's inuse magic) and unmarked
/// at close; the changed BAT entries reach the file at a flush, after the data they point at.
/// </summary>
internal sealed class ParallelsNode : BlockNode
{
    /// <summary>The BAT is written in pieces of this size around the changed entries (QEMU's bat_dirty_block, 4 pages).</summary>
    private const int BatWriteBlock = 16384;

    private readonly BlockNode _file;
    private readonly ParallelsHeader _header;
    private readonly uint[] _bat;
    private readonly long _clusterSize;
    private readonly long _dataStart;
    private readonly bool _preallocByZeroes;
    private readonly long _preallocSize;
    private readonly SemaphoreSlim _allocation = new(1, 1);

    /// <summary>The file's length at open: past it the file holds only what this node wrote (zeroes elsewhere).</summary>
    private readonly long _zeroFrom;

    /// <summary>Where the next cluster goes (bytes); under <see cref="_allocation"/>.</summary>
    private long _dataEnd;

    /// <summary>The range of BAT entries changed since the last flush (empty when first &gt; last); under <see cref="_allocation"/>.</summary>
    private long _firstDirty = long.MaxValue;
    private long _lastDirty = -1;

    private ParallelsNode(string nodeName, bool readOnly, BlockNode file, ParallelsHeader header, uint[] bat, long dataStart, long dataEnd,
        bool preallocByZeroes, long preallocSize)
        : base(nodeName, readOnly)
    {
        _file = file;
        _header = header;
        _bat = bat;
        _clusterSize = header.ClusterSize;
        _dataStart = dataStart;
        _dataEnd = dataEnd;
        _zeroFrom = file.Length;
        _preallocByZeroes = preallocByZeroes;
        _preallocSize = preallocSize;
        Length = (long)header.Sectors * ParallelsFormat.SectorSize;
        Limits = new BlockLimits(OptimalTransfer: (int)Math.Min(_clusterSize, 1 << 30));
        Capabilities = new BlockCapabilities(Backing: true);
        AttachChild("file", ChildRole.File, file, ChildUse.Metadata);
    }

    public override string DriverName => "parallels";

    internal void AttachBacking(BlockNode backing) => AttachChild("backing", ChildRole.Backing, backing);

    /// <param name="preallocByZeroes">prealloc-mode=falloc (the file grows by written zeroes) rather than truncate.</param>
    /// <param name="preallocSize">prealloc-size: how far past a new cluster the file grows at once.</param>
    public static async ValueTask<ParallelsNode> OpenAsync(string nodeName, bool readOnly, BlockNode file, bool preallocByZeroes, long preallocSize)
    {
        var fileLength = file.Length;
        var head = new byte[ParallelsFormat.HeaderSize];
        if (fileLength < head.Length)
        {
            throw BlockException.Invalid("Image not in Parallels format");
        }

        await file.ReadAsync(0, head).ConfigureAwait(false);
        var header = ParallelsHeader.Read(head);
        var batEnd = ParallelsFormat.EntryOffset(header.BatEntries);
        if (batEnd > fileLength)
        {
            throw BlockException.Invalid(
                $"parallels: the BAT ({header.BatEntries} entries) of '{file.FileName}' extends beyond the end of the file");
        }

        var raw = new byte[batEnd - ParallelsFormat.HeaderSize];
        if (raw.Length > 0)
        {
            await file.ReadAsync(ParallelsFormat.HeaderSize, raw).ConfigureAwait(false);
        }

        var bat = new uint[header.BatEntries];
        for (var i = 0; i < bat.Length; i++)
        {
            bat[i] = BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan(i * 4));
        }

        // As QEMU: the data starts at data_off, or right after the BAT, and ends after the last mapped cluster.
        var dataStart = header.DataOffset != 0
            ? (long)header.DataOffset * ParallelsFormat.SectorSize
            : (batEnd + ParallelsFormat.SectorSize - 1) / ParallelsFormat.SectorSize * ParallelsFormat.SectorSize;
        var dataEnd = dataStart;
        foreach (var entry in bat)
        {
            if (entry != 0)
            {
                dataEnd = Math.Max(dataEnd, HostOf(header, entry) + header.ClusterSize);
            }
        }

        if (header.InUse == ParallelsFormat.InUseMagic && !readOnly)
        {
            throw new BlockException(Errno.EACCES, "parallels: Image was not closed correctly; cannot be opened read/write");
        }

        var node = new ParallelsNode(nodeName, readOnly, file, header, bat, dataStart, dataEnd, preallocByZeroes, preallocSize);
        if (!readOnly)
        {
            await node.MarkInUseAsync(true).ConfigureAwait(false);
        }

        return node;
    }

    /// <summary>The file offset a BAT entry names (bytes; may lie beyond any file when the entry is damaged).</summary>
    private static long HostOf(ParallelsHeader header, uint entry) =>
        (long)Math.Min((ulong)entry * header.OffsetMultiplier * ParallelsFormat.SectorSize, long.MaxValue / 2);

    /// <summary>The file offset of guest offset <paramref name="offset"/>, or -1 where the cluster is not mapped.</summary>
    private long HostOffset(long offset)
    {
        var index = offset / _clusterSize;
        var entry = index < _bat.Length ? Volatile.Read(ref _bat[index]) : 0;
        return entry == 0 ? -1 : HostOf(_header, entry) + (offset % _clusterSize);
    }

    private int ChunkAt(long offset, long length) => BlockMapping.ChunkAt(offset, length, _clusterSize);

    /// <summary>
    /// The host offset of a mapped cluster, checked: data outside the data area or the file is an I/O
    /// error, not a read of the BAT (the file always covers the clusters this node maps: it grows first).
    /// </summary>
    private long CheckedHost(long offset, long host, int length)
    {
        if (host < _dataStart || host + length > _file.Length)
        {
            throw BlockException.Io($"parallels: cluster {offset / _clusterSize} of '{FileName}' is outside the image (offset 0x{host:x})");
        }

        return host;
    }

    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        while (buffer.Length > 0)
        {
            var n = ChunkAt(offset, buffer.Length);
            var host = HostOffset(offset);
            if (host < 0)
            {
                await BlockMapping.ReadBackingAsync(BackingChild?.Node, offset, buffer[..n]).ConfigureAwait(false);
            }
            else
            {
                await _file.ReadAsync(CheckedHost(offset, host, n), buffer[..n]).ConfigureAwait(false);
            }

            offset += n;
            buffer = buffer[n..];
        }
    }

    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        while (buffer.Length > 0)
        {
            var n = ChunkAt(offset, buffer.Length);
            var host = HostOffset(offset);
            if (host < 0)
            {
                await AllocateAsync(offset, buffer[..n]).ConfigureAwait(false);
            }
            else
            {
                await _file.WriteAsync(CheckedHost(offset, host, n), buffer[..n]).ConfigureAwait(false);
            }

            offset += n;
            buffer = buffer[n..];
        }
    }

    /// <summary>Mapped clusters hold data; unmapped ones are not this layer's (the backing node's, or zeroes without one).</summary>
    protected override ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length)
    {
        var n = (long)ChunkAt(offset, length);
        var mapped = HostOffset(offset) >= 0;
        while (n < length && (HostOffset(offset + n) >= 0) == mapped)
        {
            n += ChunkAt(offset + n, length - n);
        }

        return ValueTask.FromResult(new BlockStatus(n, mapped ? BlockStatusFlags.Data | BlockStatusFlags.Allocated : BlockStatusFlags.None));
    }

    /// <summary>
    /// Gives the cluster of <paramref name="offset"/> the next cluster of the data area. Where the file
    /// may hold old bytes there, or a backing node shows through, the cluster is written whole (what
    /// lay below with <paramref name="data"/> over it) before it is mapped; past <see cref="_zeroFrom"/>
    /// without backing it is mapped first and only the data written, since the rest already reads as zeroes.
    /// </summary>
    private async ValueTask AllocateAsync(long offset, ReadOnlyMemory<byte> data)
    {
        var index = offset / _clusterSize;
        long host;
        await _allocation.WaitAsync().ConfigureAwait(false);
        try
        {
            if (HostOffset(offset) is var existing and >= 0)
            {
                host = CheckedHost(offset, existing, data.Length);
            }
            else
            {
                if (index >= _bat.Length)
                {
                    throw BlockException.Io($"parallels: guest offset 0x{offset:x} of '{FileName}' lies beyond its BAT");
                }

                var start = AlignedDataEnd();
                var entry = (ulong)start / ParallelsFormat.SectorSize / _header.OffsetMultiplier;
                if (entry > uint.MaxValue)
                {
                    throw new BlockException(Errno.ENOSPC, $"parallels: '{FileName}' has no room for another cluster");
                }

                await GrowFileAsync(start + _clusterSize).ConfigureAwait(false);
                var inCluster = (int)(offset % _clusterSize);
                if (start < _zeroFrom || BackingChild is not null)
                {
                    await WriteWholeClusterAsync(start, offset - inCluster, inCluster, data).ConfigureAwait(false);
                    Map(index, (uint)entry, start);
                    return;
                }

                Map(index, (uint)entry, start);
                host = start + inCluster;
            }
        }
        finally
        {
            _allocation.Release();
        }

        await _file.WriteAsync(host, data).ConfigureAwait(false);
    }

    /// <summary>The data end rounded up to a whole BAT unit (a cluster under the extended magic), where a new cluster can be named.</summary>
    private long AlignedDataEnd()
    {
        var unit = (long)_header.OffsetMultiplier * ParallelsFormat.SectorSize;
        return (_dataEnd + unit - 1) / unit * unit;
    }

    private void Map(long index, uint entry, long start)
    {
        Volatile.Write(ref _bat[index], entry);
        Volatile.Write(ref _dataEnd, start + _clusterSize);
        _firstDirty = Math.Min(_firstDirty, index);
        _lastDirty = Math.Max(_lastDirty, index);
    }

    /// <summary>Makes the file reach <paramref name="end"/>, growing it by prealloc-size more at once, as QEMU's allocate_clusters.</summary>
    private async ValueTask GrowFileAsync(long end)
    {
        var length = _file.Length;
        if (end <= length)
        {
            return;
        }

        var target = end + _preallocSize;
        await _file.TruncateAsync(target).ConfigureAwait(false);
        if (_preallocByZeroes)
        {
            // falloc: the new range zeroed through the file, which allocates it where the file can.
            await _file.WriteZeroesAsync(length, target - length).ConfigureAwait(false);
        }
    }

    private async ValueTask WriteWholeClusterAsync(long host, long guestStart, int inCluster, ReadOnlyMemory<byte> data)
    {
        var size = (int)_clusterSize;
        var whole = ArrayPool<byte>.Shared.Rent(size);
        try
        {
            var memory = whole.AsMemory(0, size);
            await BlockMapping.ReadBackingAsync(BackingChild?.Node, guestStart, memory).ConfigureAwait(false);
            data.Span.CopyTo(memory.Span[inCluster..]);
            await _file.WriteAsync(host, memory).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(whole);
        }
    }

    protected override async ValueTask FlushCoreAsync()
    {
        await _allocation.WaitAsync().ConfigureAwait(false);
        try
        {
            await WriteBatLockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _allocation.Release();
        }

        await _file.FlushAsync().ConfigureAwait(false);
    }

    /// <summary>Writes the BAT entries changed since the last time, once the data they point at is on disk.</summary>
    private async ValueTask WriteBatLockedAsync()
    {
        if (_lastDirty < _firstDirty)
        {
            return;
        }

        await _file.FlushAsync().ConfigureAwait(false);
        var from = Math.Max(ParallelsFormat.HeaderSize, ParallelsFormat.EntryOffset(_firstDirty) / BatWriteBlock * BatWriteBlock);
        var to = Math.Min(ParallelsFormat.EntryOffset(_bat.Length),
            (ParallelsFormat.EntryOffset(_lastDirty + 1) + BatWriteBlock - 1) / BatWriteBlock * BatWriteBlock);
        var bytes = new byte[to - from];
        var first = (from - ParallelsFormat.HeaderSize) / 4;
        for (var i = 0; i < bytes.Length / 4; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(i * 4), Volatile.Read(ref _bat[first + i]));
        }

        await _file.WriteAsync(from, bytes).ConfigureAwait(false);
        _firstDirty = long.MaxValue;
        _lastDirty = -1;
    }

    /// <summary>Sets or clears the header's inuse mark and makes it durable (QEMU's parallels_update_header); opened read-write, a format extension is dropped, as QEMU drops it.</summary>
    private async ValueTask MarkInUseAsync(bool inUse)
    {
        _header.InUse = inUse ? ParallelsFormat.InUseMagic : 0;
        _header.ExtensionOffset = 0;
        var bytes = new byte[ParallelsFormat.HeaderSize];
        _header.Write(bytes);
        await _file.WriteAsync(0, bytes).ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);
    }

    /// <summary>Going read-only the image is closed cleanly (BAT written, mark cleared, file cut to its data); going read-write it is marked again.</summary>
    protected override async ValueTask ReopenCoreAsync(bool readOnly)
    {
        if (readOnly)
        {
            await CloseCleanlyAsync().ConfigureAwait(false);
        }
        else
        {
            await MarkInUseAsync(true).ConfigureAwait(false);
        }
    }

    protected override async ValueTask DisposeCoreAsync()
    {
        if (!IsReadOnly)
        {
            await CloseCleanlyAsync().ConfigureAwait(false);
        }
    }

    /// <summary>QEMU's parallels_close: the BAT flushed, the inuse mark cleared, the file truncated to the end of the data.</summary>
    private async ValueTask CloseCleanlyAsync()
    {
        await FlushCoreAsync().ConfigureAwait(false);
        await MarkInUseAsync(false).ConfigureAwait(false);
        var end = Volatile.Read(ref _dataEnd);
        if (_file.Length > end)
        {
            await _file.TruncateAsync(end).ConfigureAwait(false);
        }
    }
}
