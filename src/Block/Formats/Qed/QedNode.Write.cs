using System.Buffers;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qed;

/// <summary>Writes: in place into allocated clusters; new clusters appended, one at a time under the allocation lock.</summary>
internal sealed partial class QedNode
{
    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        while (buffer.Length > 0)
        {
            var m = await MapAsync(offset, buffer.Length).ConfigureAwait(false);
            var n = m.Kind == QedClusterKind.Data ? (int)m.Length : (int)Math.Min(buffer.Length, ClusterSize - (offset & (ClusterSize - 1)));
            if (m.Kind == QedClusterKind.Data)
            {
                await _file.WriteAsync(m.Host, buffer[..n]).ConfigureAwait(false);
            }
            else
            {
                await AllocateAsync(offset, buffer[..n]).ConfigureAwait(false);
            }

            offset += n;
            buffer = buffer[n..];
        }
    }

    /// <summary>
    /// Gives the cluster of <paramref name="offset"/> its own cluster at the end of the file: what lay
    /// below (backing data, or zeroes) with <paramref name="data"/> over it, then links it.
    /// </summary>
    private async ValueTask AllocateAsync(long offset, ReadOnlyMemory<byte> data)
    {
        await _allocation.WaitAsync().ConfigureAwait(false);
        var cluster = ArrayPool<byte>.Shared.Rent((int)ClusterSize);
        try
        {
            var m = await MapAsync(offset, data.Length).ConfigureAwait(false);
            if (m.Kind == QedClusterKind.Data)
            {
                await _file.WriteAsync(m.Host, data).ConfigureAwait(false);
                return;
            }

            await SetNeedCheckAsync().ConfigureAwait(false);
            var start = offset & ~(ClusterSize - 1);
            var whole = cluster.AsMemory(0, (int)ClusterSize);
            if (m.Kind == QedClusterKind.Unallocated)
            {
                await ReadBelowAsync(start, whole).ConfigureAwait(false);
            }
            else
            {
                whole.Span.Clear();
            }

            data.Span.CopyTo(whole.Span[(int)(offset - start)..]);
            var host = await AppendAsync(whole).ConfigureAwait(false);
            await LinkAsync(start, (ulong)host).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(cluster);
            _allocation.Release();
        }
    }

    /// <summary>Sets need-check on disk before the first allocation since the last flush (QEMU's qed_aio_write_alloc).</summary>
    private async ValueTask SetNeedCheckAsync()
    {
        if (_header.NeedCheck)
        {
            return;
        }

        _header.Features |= QedFormat.FeatureNeedCheck;
        await WriteHeaderAsync().ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);
    }

    /// <summary>Writes <paramref name="bytes"/> (whole clusters) at the end of the file; returns where.</summary>
    private async ValueTask<long> AppendAsync(ReadOnlyMemory<byte> bytes)
    {
        var host = _fileEnd;
        var end = host + bytes.Length;
        if (_file.Length < end)
        {
            await _file.TruncateAsync(end).ConfigureAwait(false);
        }

        await _file.WriteAsync(host, bytes).ConfigureAwait(false);
        Volatile.Write(ref _fileEnd, end);
        return host;
    }

    /// <summary>
    /// Points the L2 entry of guest cluster <paramref name="start"/> at <paramref name="host"/>: a new
    /// L2 table and then its L1 entry, or the one changed L2 sector. With a backing file the new data
    /// reaches the disk first.
    /// </summary>
    private async ValueTask LinkAsync(long start, ulong host)
    {
        var l1Index = (int)(start >> _l1Shift);
        var l2Index = (int)((start >> _clusterBits) & (_header.TableEntries - 1));
        var l2Offset = _l1[l1Index];
        if (l2Offset == QedFormat.Unallocated)
        {
            var table = new QedTable(_header.TableEntries);
            table[l2Index] = host;
            var raw = new byte[_header.TableBytes];
            table.Encode(0, table.Count, raw);
            var tableOffset = (ulong)await AppendAsync(raw).ConfigureAwait(false);
            await FlushBeforeLinkAsync().ConfigureAwait(false);
            await WriteEntrySectorAsync(_l1, (long)_header.L1TableOffset, l1Index, tableOffset).ConfigureAwait(false);
            lock (_cacheLock)
            {
                _l2Cache[tableOffset] = table;
            }

            return;
        }

        var l2 = await GetL2Async(l1Index, l2Offset).ConfigureAwait(false);
        await FlushBeforeLinkAsync().ConfigureAwait(false);
        await WriteEntrySectorAsync(l2, (long)l2Offset, l2Index, host).ConfigureAwait(false);
    }

    private async ValueTask FlushBeforeLinkAsync()
    {
        if (BackingChild is not null)
        {
            await _file.FlushAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Writes the sector of <paramref name="table"/> (stored at <paramref name="tableOffset"/>) holding entry <paramref name="index"/> set to <paramref name="value"/>, then sets it in memory.</summary>
    private async ValueTask WriteEntrySectorAsync(QedTable table, long tableOffset, int index, ulong value)
    {
        var first = index & ~(QedTable.EntriesPerSector - 1);
        var sector = new byte[512];
        table.Encode(first, QedTable.EntriesPerSector, sector);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(sector.AsSpan((index - first) * 8), value);
        lock (_cacheLock)
        {
            _tableWrites++;
        }

        await _file.WriteAsync(tableOffset + (first * 8L), sector).ConfigureAwait(false);
        lock (_cacheLock)
        {
            table[index] = value;

            // The copy the caller holds may have left the cache and another been read meanwhile.
            if (_l2Cache.TryGetValue((ulong)tableOffset, out var cached))
            {
                cached[index] = value;
            }

            _tableWrites++;
        }
    }
}
