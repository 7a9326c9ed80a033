using System.Buffers.Binary;
using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>Resizing: growing (with L1 table growth) and shrinking over unallocated space only.</summary>
public sealed partial class Qcow2Node
{
    protected override async ValueTask TruncateCoreAsync(long length)
    {
        CheckNotCorrupt();
        if (_snapshots.Count > 0 && length < Length)
        {
            throw BlockException.NotSupported("qcow2: cannot shrink an image with internal snapshots");
        }

        // As QEMU's qcow2_truncate_bitmaps_check: the stored bitmaps are resized with the image only
        // when every one of them can be changed (an inconsistent one, above all, cannot).
        foreach (var entry in _storedBitmaps)
        {
            FindDirtyBitmap(entry.Name)?.Check(BitmapChecks.Default);
        }

        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            if (length < Length)
            {
                await CheckUnusedAsync(length, Length - length).ConfigureAwait(false);
            }

            var needed = Qcow2Header.L1EntriesFor(length, _clusterBits, _header.ExtendedL2);
            if (needed * 8 > Qcow2Format.MaxL1Bytes)
            {
                throw new BlockException(Errno.EFBIG, $"qcow2: size {length} needs an L1 table larger than {Qcow2Format.MaxL1Bytes} bytes");
            }

            if (needed > _l1.Length)
            {
                await GrowL1LockedAsync((int)needed).ConfigureAwait(false);
            }

            if (_header.DataFileRaw && _data.Length < length)
            {
                await _data.TruncateAsync(length).ConfigureAwait(false);
            }

            await WriteBackLockedAsync().ConfigureAwait(false);
            var field = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(field, (ulong)length);
            await _file.WriteAsync(Qcow2Header.OffSize, field).ConfigureAwait(false);
            await _file.FlushAsync().ConfigureAwait(false);
            _header.Size = length;
            Length = length;
        }
        finally
        {
            _meta.Release();
        }
    }

    /// <summary>Refuses to drop a range that holds anything in this layer.</summary>
    private async ValueTask CheckUnusedAsync(long offset, long length)
    {
        var end = offset + length;
        while (offset < end)
        {
            var m = await GetMappingAsync(_l1, offset, end - offset).ConfigureAwait(false);
            if (m.Kind != Qcow2ClusterKind.Unallocated)
            {
                throw BlockException.NotSupported($"qcow2: cannot shrink '{FileName}': guest offset 0x{offset:x} is in use");
            }

            offset += m.Length;
        }
    }

    /// <summary>New L1 table (written and flushed), then the header points at it, then the old one is freed.</summary>
    private async ValueTask GrowL1LockedAsync(int entries)
    {
        var bytes = entries * 8L;
        var clusters = (int)(AlignUp(bytes, _clusterSize) >> _clusterBits);
        var newOffset = await AllocateClustersLockedAsync(clusters).ConfigureAwait(false);
        var newL1 = new ulong[entries];
        Array.Copy(_l1, newL1, _l1.Length);
        var buf = new byte[(long)clusters << _clusterBits];
        for (var i = 0; i < entries; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(buf.AsSpan(i * 8), newL1[i]);
        }

        await WriteBackLockedAsync().ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);
        await _file.WriteAsync(newOffset, buf).ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);

        var field = new byte[12];
        BinaryPrimitives.WriteUInt32BigEndian(field, (uint)entries);
        BinaryPrimitives.WriteUInt64BigEndian(field.AsSpan(4), (ulong)newOffset);
        await _file.WriteAsync(Qcow2Header.OffL1Size, field).ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);

        var oldOffset = _l1Offset;
        var oldClusters = (int)(AlignUp(_l1.Length * 8L, _clusterSize) >> _clusterBits);
        _l1 = newL1;
        _l1Offset = newOffset;
        _header.L1Size = entries;
        _header.L1TableOffset = newOffset;
        if (oldClusters > 0 && oldOffset != 0)
        {
            await FreeReplacedMetadataLockedAsync(oldOffset, oldClusters).ConfigureAwait(false);
        }
    }
}
