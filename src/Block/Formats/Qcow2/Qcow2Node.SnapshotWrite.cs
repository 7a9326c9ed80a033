using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// Creating and deleting internal snapshots. Both hold every guest cluster (no write in flight)
/// and the metadata lock. Crash order: create raises refcounts before anything points to the
/// snapshot's tables; delete removes the snapshot from the table before lowering refcounts.
/// </summary>
public sealed partial class Qcow2Node
{
    /// <summary>Takes an internal snapshot of the active image (QEMU's blockdev-snapshot-internal-sync).</summary>
    public async ValueTask<Qcow2Snapshot> CreateSnapshotAsync(string name, string? id = null)
    {
        if (IsReadOnly)
        {
            throw new BlockException(Errno.EPERM, $"Node '{NodeName}' is read-only");
        }

        if (HasExternalData)
        {
            throw BlockException.NotSupported("qcow2: internal snapshots are not supported with an external data file");
        }

        CheckNotCorrupt();
        using var all = await _clusterLocks.AcquireAsync(0, long.MaxValue).ConfigureAwait(false);
        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            id ??= (_snapshots.Select(s => long.TryParse(s.Id, out var n) ? n : 0).DefaultIfEmpty(0).Max() + 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (_snapshots.Exists(s => s.Id == id || s.Name == name))
            {
                throw new BlockException(Errno.EEXIST, $"Snapshot with name '{name}' or id '{id}' already exists");
            }

            var l1Bytes = _l1.Length * 8L;
            var l1Copy = l1Bytes == 0 ? 0 : await AllocateClustersLockedAsync((int)(AlignUp(l1Bytes, _clusterSize) >> _clusterBits)).ConfigureAwait(false);
            await UpdateTreeRefcountsLockedAsync(_l1, 1, active: true).ConfigureAwait(false);
            await WriteBackLockedAsync().ConfigureAwait(false);
            await _file.FlushAsync().ConfigureAwait(false);
            await WriteL1TableAsync(_l1Offset, _l1).ConfigureAwait(false);
            if (l1Bytes > 0)
            {
                await WriteL1TableAsync(l1Copy, _l1).ConfigureAwait(false);
            }

            var now = DateTimeOffset.UtcNow;
            var extra = new byte[24];
            BinaryPrimitives.WriteUInt64BigEndian(extra.AsSpan(8), (ulong)Length);
            BinaryPrimitives.WriteUInt64BigEndian(extra.AsSpan(16), ulong.MaxValue);
            var snapshot = new Qcow2Snapshot
            {
                Id = id,
                Name = name,
                L1TableOffset = l1Copy,
                L1Size = _l1.Length,
                DateSeconds = (uint)now.ToUnixTimeSeconds(),
                DateNanoseconds = (uint)(now.Ticks % TimeSpan.TicksPerSecond * 100),
                Extra = extra,
            };
            await WriteSnapshotTableLockedAsync([.. _snapshots, snapshot]).ConfigureAwait(false);
            return snapshot;
        }
        finally
        {
            _meta.Release();
        }
    }

    /// <summary>Deletes an internal snapshot by id or name and releases the clusters only it used.</summary>
    public async ValueTask DeleteSnapshotAsync(string idOrName)
    {
        if (IsReadOnly)
        {
            throw new BlockException(Errno.EPERM, $"Node '{NodeName}' is read-only");
        }

        CheckNotCorrupt();
        using var all = await _clusterLocks.AcquireAsync(0, long.MaxValue).ConfigureAwait(false);
        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            var snapshot = FindSnapshot(idOrName)
                           ?? throw new BlockException(Errno.ENOENT, $"Snapshot with id or name '{idOrName}' does not exist");
            await DeletingSnapshotLockedAsync(async () =>
            {
                await WriteSnapshotTableLockedAsync(_snapshots.Where(s => s != snapshot).ToList()).ConfigureAwait(false);
                var l1 = await ReadL1Async(snapshot.L1TableOffset, snapshot.L1Size).ConfigureAwait(false);
                await UpdateTreeRefcountsLockedAsync(l1, -1, active: false).ConfigureAwait(false);
                if (snapshot.L1Size > 0)
                {
                    await FreeClustersLockedAsync(snapshot.L1TableOffset, (int)(AlignUp(snapshot.L1Size * 8L, _clusterSize) >> _clusterBits)).ConfigureAwait(false);
                }

                // Clusters only the active image uses again may be written in place.
                await UpdateTreeRefcountsLockedAsync(_l1, 0, active: true).ConfigureAwait(false);
                await WriteBackLockedAsync().ConfigureAwait(false);
                await _file.FlushAsync().ConfigureAwait(false);
                await WriteL1TableAsync(_l1Offset, _l1).ConfigureAwait(false);
                await _file.FlushAsync().ConfigureAwait(false);
            }).ConfigureAwait(false);
        }
        finally
        {
            _meta.Release();
        }
    }

    /// <summary>
    /// Adds <paramref name="addend"/> to the refcount of every L2 table and data cluster of one L1 tree;
    /// for the active tree, then sets each COPIED flag to "refcount is 1" (in <paramref name="l1"/> and the L2 tables).
    /// </summary>
    private async ValueTask UpdateTreeRefcountsLockedAsync(ulong[] l1, int addend, bool active)
    {
        for (var i = 0; i < l1.Length; i++)
        {
            var l2Offset = await L2OffsetAsync(l1[i], i).ConfigureAwait(false);
            if (l2Offset == 0)
            {
                continue;
            }

            var table = await _l2Cache.GetAsync(l2Offset).ConfigureAwait(false);
            for (var j = 0; j < 1 << _l2Bits; j++)
            {
                var entry = ReadL2Entry(table, j);
                if ((entry & Qcow2Format.FlagCompressed) != 0)
                {
                    if (addend != 0)
                    {
                        await AddToCompressedLockedAsync(entry, addend).ConfigureAwait(false);
                    }

                    continue;
                }

                var host = (long)(entry & Qcow2Format.OffsetMask);
                if (host == 0)
                {
                    continue;
                }

                await AddRefcountLockedAsync(host, addend).ConfigureAwait(false);
                if (active)
                {
                    var copied = await GetRefcountAsync(host >> _clusterBits).ConfigureAwait(false) == 1;
                    var updated = copied ? entry | Qcow2Format.FlagCopied : entry & ~Qcow2Format.FlagCopied;
                    if (updated != entry)
                    {
                        WriteL2Entry(table, j, updated, ReadL2Bitmap(table, j));
                    }
                }
            }

            await AddRefcountLockedAsync(l2Offset, addend).ConfigureAwait(false);
            if (active)
            {
                var copied = await GetRefcountAsync(l2Offset >> _clusterBits).ConfigureAwait(false) == 1;
                l1[i] = copied ? l1[i] | Qcow2Format.FlagCopied : l1[i] & ~Qcow2Format.FlagCopied;
            }
        }
    }

    private async ValueTask AddRefcountLockedAsync(long offset, int addend)
    {
        if (addend > 0)
        {
            await IncrementRefcountLockedAsync(offset).ConfigureAwait(false);
        }
        else if (addend < 0)
        {
            await FreeClustersLockedAsync(offset, 1).ConfigureAwait(false);
        }
    }

    private async ValueTask AddToCompressedLockedAsync(ulong entry, int addend)
    {
        if (addend < 0)
        {
            await FreeEntryLockedAsync(entry).ConfigureAwait(false);
            return;
        }

        var (offset, length) = CompressedExtent(entry);
        for (var c = offset & ClusterOffsetMask; c < offset + length; c += _clusterSize)
        {
            await IncrementRefcountLockedAsync(c).ConfigureAwait(false);
        }
    }

    private async ValueTask WriteL1TableAsync(long offset, ulong[] l1)
    {
        var buf = new byte[l1.Length * 8];
        for (var i = 0; i < l1.Length; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(buf.AsSpan(i * 8), l1[i]);
        }

        if (buf.Length > 0)
        {
            await _file.WriteAsync(offset, buf).ConfigureAwait(false);
        }
    }

    /// <summary>Writes a new snapshot table in new clusters, points the header at it, then frees the old table.</summary>
    private async ValueTask WriteSnapshotTableLockedAsync(List<Qcow2Snapshot> snapshots)
    {
        var size = snapshots.Sum(s => (long)s.EncodedLength);
        long offset = 0;
        if (size > 0)
        {
            var clusters = (int)(AlignUp(size, _clusterSize) >> _clusterBits);
            offset = await AllocateClustersLockedAsync(clusters).ConfigureAwait(false);
            var buf = new byte[size];
            var pos = 0;
            foreach (var s in snapshots)
            {
                pos += s.Write(buf.AsSpan(pos));
            }

            await WriteBackLockedAsync().ConfigureAwait(false);
            await _file.WriteAsync(offset, buf).ConfigureAwait(false);
            await _file.FlushAsync().ConfigureAwait(false);
        }

        var field = new byte[12];
        BinaryPrimitives.WriteUInt32BigEndian(field, (uint)snapshots.Count);
        BinaryPrimitives.WriteUInt64BigEndian(field.AsSpan(4), (ulong)offset);
        await _file.WriteAsync(Qcow2Header.OffNbSnapshots, field).ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);

        var oldOffset = _header.SnapshotsOffset;
        var oldSize = _snapshots.Sum(s => (long)s.EncodedLength);
        _header.SnapshotCount = snapshots.Count;
        _header.SnapshotsOffset = offset;
        _snapshots = snapshots;
        if (oldSize > 0)
        {
            await FreePassingLockedAsync(oldOffset, (int)(AlignUp(oldSize, _clusterSize) >> _clusterBits), _options.PassDiscardSnapshot).ConfigureAwait(false);
        }
    }
}
