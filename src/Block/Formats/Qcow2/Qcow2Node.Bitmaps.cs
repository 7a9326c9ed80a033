using System.Buffers.Binary;
using System.Numerics;
using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// Persistent dirty bitmaps (the bitmaps extension and directory of the qcow2 specification), kept
/// as QEMU keeps them: every stored bitmap is loaded on open (one found in use was not stored by the
/// program that used it last and loads as inconsistent); while the image is open read-write the
/// directory marks them in use; when it closes or becomes read-only they are written back (data,
/// tables, a new directory, then the header) and the old clusters freed.
/// </summary>
public sealed partial class Qcow2Node : IPersistentBitmaps
{
    // Bitmap table entries: the data cluster's offset, or 0 with bit 0 saying "all ones".
    private const ulong BitmapEntryOffsetMask = 0x00fffffffffffe00UL;
    private const ulong BitmapEntryReservedMask = 0xff000000000001feUL;
    private const ulong BitmapEntryAllOnes = 1;

    /// <summary>The bitmap directory as the image holds it now, in file order.</summary>
    private List<Qcow2BitmapEntry> _storedBitmaps = [];

    /// <summary>On open: a bitmap for every entry, with its bits; read-only ones when the image is.</summary>
    private async ValueTask LoadBitmapsAsync()
    {
        _storedBitmaps = await Qcow2BitmapDirectory.ReadAsync(_file, _header).ConfigureAwait(false);
        foreach (var entry in _storedBitmaps)
        {
            var bitmap = CreateDirtyBitmap(entry.Name, entry.Granularity);
            bitmap.Persistent = true;

            // The bits of a bitmap in use cannot be trusted: it stays empty, as in QEMU.
            if (entry.InUse)
            {
                bitmap.SetInconsistent();
            }
            else
            {
                await LoadBitmapDataAsync(entry, bitmap.Bits).ConfigureAwait(false);
                bitmap.Enabled = entry.Auto;
            }

            bitmap.ReadOnly = IsReadOnly;
        }
    }

    private async ValueTask<ulong[]> ReadBitmapTableAsync(Qcow2BitmapEntry entry)
    {
        var bytes = new byte[entry.TableSize * 8L];
        await _file.ReadAsync(entry.TableOffset, bytes).ConfigureAwait(false);
        var table = new ulong[entry.TableSize];
        for (var i = 0; i < table.Length; i++)
        {
            var e = BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(i * 8));
            var offset = e & BitmapEntryOffsetMask;
            if ((e & BitmapEntryReservedMask) != 0 || (offset != 0 && (e & BitmapEntryAllOnes) != 0) || (offset & (ulong)(_clusterSize - 1)) != 0)
            {
                throw BlockException.Invalid($"qcow2 image '{FileName}': bitmap '{entry.Name}' has an invalid table entry 0x{e:x} at index {i}");
            }

            table[i] = e;
        }

        return table;
    }

    private async ValueTask LoadBitmapDataAsync(Qcow2BitmapEntry entry, DirtyBitmap bits)
    {
        var table = await ReadBitmapTableAsync(entry).ConfigureAwait(false);
        var cluster = new byte[_clusterSize];
        var coveredPerCluster = _clusterSize * 8L * entry.Granularity;
        for (var i = 0; i < table.Length; i++)
        {
            var offset = (long)(table[i] & BitmapEntryOffsetMask);
            if (offset != 0)
            {
                await _file.ReadAsync(offset, cluster).ConfigureAwait(false);
                bits.WriteBytes((long)i * _clusterSize, cluster);
            }
            else if ((table[i] & BitmapEntryAllOnes) != 0 && i * coveredPerCluster < bits.Length)
            {
                bits.Set(i * coveredPerCluster, Math.Min(coveredPerCluster, bits.Length - (i * coveredPerCluster)));
            }
        }
    }

    /// <summary>
    /// On a read-write open: every stored bitmap is marked in use, so a crash leaves them
    /// inconsistent rather than silently stale. As QEMU's update_ext_header_and_dir_in_place, the
    /// autoclear bit is off while the directory is rewritten in place.
    /// </summary>
    private async ValueTask MarkBitmapsInUseAsync()
    {
        if (_storedBitmaps.TrueForAll(e => e.InUse))
        {
            return;
        }

        _storedBitmaps = _storedBitmaps.ConvertAll(e => e with { Flags = e.Flags | Qcow2BitmapDirectory.FlagInUse });
        _header.AutoclearFeatures &= ~Qcow2Format.AutoclearBitmaps;
        await WriteHeaderAsync().ConfigureAwait(false);
        await _file.WriteAsync(_header.BitmapDirectoryOffset, Qcow2BitmapDirectory.Encode(_storedBitmaps)).ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);
        _header.AutoclearFeatures |= Qcow2Format.AutoclearBitmaps;
        await WriteHeaderAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Writes every persistent bitmap that is neither inconsistent nor read-only (QEMU's
    /// qcow2_store_persistent_dirty_bitmaps): entries of the directory keep their place, new ones are
    /// appended; entries of inconsistent bitmaps stay as they are, in use. The caller holds the metadata lock.
    /// </summary>
    private async ValueTask StoreBitmapsLockedAsync()
    {
        var toStore = DirtyBitmaps.Where(b => b.Persistent && !b.Inconsistent && !b.ReadOnly).ToList();
        if (toStore.Count == 0)
        {
            return;
        }

        var entries = new List<Qcow2BitmapEntry>(_storedBitmaps);
        var replaced = new List<Qcow2BitmapEntry>();
        foreach (var bitmap in toStore)
        {
            var (tableOffset, tableSize) = await WriteBitmapDataLockedAsync(bitmap.Bits).ConfigureAwait(false);
            var entry = new Qcow2BitmapEntry(tableOffset, tableSize, bitmap.Enabled ? Qcow2BitmapDirectory.FlagAuto : 0,
                BitOperations.Log2((ulong)bitmap.Granularity), bitmap.Name);
            var i = entries.FindIndex(e => e.Name == bitmap.Name);
            if (i >= 0)
            {
                replaced.Add(entries[i]);
                entries[i] = entry;
            }
            else
            {
                entries.Add(entry);
            }
        }

        await WriteBitmapDirectoryLockedAsync(entries).ConfigureAwait(false);
        foreach (var old in replaced)
        {
            await FreeBitmapClustersLockedAsync(old).ConfigureAwait(false);
        }
    }

    /// <summary>Writes the bitmap's non-zero data clusters and its table; returns the table's place.</summary>
    private async ValueTask<(long Offset, int Size)> WriteBitmapDataLockedAsync(DirtyBitmap bits)
    {
        var dataBytes = (bits.GranuleCount + 63) / 64 * 8;
        var tableSize = (int)Math.Max(1, (dataBytes + _clusterSize - 1) / _clusterSize);
        var table = new byte[tableSize * 8];
        var cluster = new byte[_clusterSize];
        for (var i = 0; i < tableSize; i++)
        {
            bits.ReadBytes((long)i * _clusterSize, cluster);
            if (!cluster.AsSpan().ContainsAnyExcept((byte)0))
            {
                continue;
            }

            var offset = await AllocateClustersLockedAsync(1).ConfigureAwait(false);
            await _file.WriteAsync(offset, cluster).ConfigureAwait(false);
            BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan(i * 8), (ulong)offset);
        }

        var tableOffset = await AllocateClustersLockedAsync(ClustersFor(table.Length)).ConfigureAwait(false);
        await _file.WriteAsync(tableOffset, table).ConfigureAwait(false);
        return (tableOffset, tableSize);
    }

    /// <summary>
    /// Writes <paramref name="entries"/> as a new directory (none: the extension goes), points the
    /// header at it once it and the refcounts are on disk, then frees the old directory.
    /// </summary>
    private async ValueTask WriteBitmapDirectoryLockedAsync(List<Qcow2BitmapEntry> entries)
    {
        long offset = 0, size = 0;
        if (entries.Count > 0)
        {
            var dir = Qcow2BitmapDirectory.Encode(entries);
            size = dir.Length;
            offset = await AllocateClustersLockedAsync(ClustersFor(dir.Length)).ConfigureAwait(false);
            await _file.WriteAsync(offset, dir).ConfigureAwait(false);
        }

        await WriteBackLockedAsync().ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);
        var (oldOffset, oldSize) = (_header.BitmapDirectoryOffset, _header.BitmapDirectorySize);
        _header.SetBitmapDirectory(entries.Count, size, offset);
        await WriteHeaderAsync().ConfigureAwait(false);
        _storedBitmaps = entries;
        if (oldSize > 0)
        {
            await FreeClustersLockedAsync(oldOffset, ClustersFor(oldSize)).ConfigureAwait(false);
        }
    }

    private async ValueTask FreeBitmapClustersLockedAsync(Qcow2BitmapEntry entry)
    {
        foreach (var e in await ReadBitmapTableAsync(entry).ConfigureAwait(false))
        {
            if ((e & BitmapEntryOffsetMask) != 0)
            {
                await FreeClustersLockedAsync((long)(e & BitmapEntryOffsetMask), 1).ConfigureAwait(false);
            }
        }

        await FreeClustersLockedAsync(entry.TableOffset, ClustersFor(entry.TableSize * 8L)).ConfigureAwait(false);
    }

    private int ClustersFor(long bytes) => (int)((bytes + _clusterSize - 1) >> _clusterBits);

    /// <summary>Every cluster the bitmaps use (directory, tables, data), for the refcount repair.</summary>
    private async ValueTask CountBitmapsAsync(Action<long, long> add)
    {
        if (_storedBitmaps.Count == 0)
        {
            return;
        }

        add(_header.BitmapDirectoryOffset, _header.BitmapDirectorySize);
        foreach (var entry in _storedBitmaps)
        {
            add(entry.TableOffset, entry.TableSize * 8L);
            foreach (var e in await ReadBitmapTableAsync(entry).ConfigureAwait(false))
            {
                if ((e & BitmapEntryOffsetMask) != 0)
                {
                    add((long)(e & BitmapEntryOffsetMask), _clusterSize);
                }
            }
        }
    }

    public void CheckCanStore(string name, long granularity)
    {
        var reason = _header.Version < 3
            ? "Cannot store dirty bitmaps in qcow2 v2 files"
            : Qcow2BitmapDirectory.ConstraintViolation(name, granularity, _clusterSize, Length);
        if (reason is null && _header.BitmapCount > 0)
        {
            if (_header.BitmapCount >= Qcow2Header.MaxBitmaps)
            {
                reason = "Maximum number of persistent bitmaps is already reached";
            }
            else if (_header.BitmapDirectorySize + Qcow2BitmapDirectory.EntryLength(System.Text.Encoding.UTF8.GetByteCount(name), 0) > Qcow2Header.MaxBitmapDirectorySize)
            {
                reason = "Not enough space in the bitmap directory";
            }
        }

        if (reason is not null)
        {
            throw BlockException.Invalid($"Can't make bitmap '{name}' persistent in '{NodeName}': {reason}");
        }
    }

    public async ValueTask RemoveStoredAsync(string name)
    {
        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            var i = _storedBitmaps.FindIndex(e => e.Name == name);
            if (i < 0)
            {
                // Persistent but never stored: nothing in the image to remove.
                return;
            }

            var entry = _storedBitmaps[i];
            var rest = new List<Qcow2BitmapEntry>(_storedBitmaps);
            rest.RemoveAt(i);
            await WriteBitmapDirectoryLockedAsync(rest).ConfigureAwait(false);
            await FreeBitmapClustersLockedAsync(entry).ConfigureAwait(false);
            await WriteBackLockedAsync().ConfigureAwait(false);
            await _file.FlushAsync().ConfigureAwait(false);
        }
        finally
        {
            _meta.Release();
        }
    }

    /// <summary>
    /// Going read-only stores the bitmaps and makes them read-only, as QEMU's qcow2_reopen_bitmaps_ro;
    /// going read-write marks them in use again and lets QMP change them.
    /// </summary>
    protected override async ValueTask ReopenCoreAsync(bool readOnly)
    {
        if (readOnly)
        {
            if (_corruptReason is null && !_file.IsReadOnly)
            {
                await _meta.WaitAsync().ConfigureAwait(false);
                try
                {
                    await StoreBitmapsLockedAsync().ConfigureAwait(false);
                    await WriteBackLockedAsync().ConfigureAwait(false);
                    await _file.FlushAsync().ConfigureAwait(false);
                }
                finally
                {
                    _meta.Release();
                }
            }
        }
        else
        {
            await MarkBitmapsInUseAsync().ConfigureAwait(false);
        }

        foreach (var bitmap in DirtyBitmaps.Where(b => b.Persistent))
        {
            bitmap.ReadOnly = readOnly;
        }
    }
}
