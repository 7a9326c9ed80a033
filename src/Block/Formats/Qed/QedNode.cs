using System.Text.Json.Nodes;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qed;

/// <summary>
/// A QED image as a block node: guest clusters found through an L1 table (in memory) and L2 tables
/// (read when first used, a bounded set kept). New clusters are appended to the file: the data
/// first, then a new L2 table or the changed L2 sector, then the L1 sector, as QEMU orders them. The
/// need-check feature bit is set before the first allocation and cleared at a flush, once the
/// allocations are on disk, so an image left by a kill is checked (QedNode.Check.cs) before it is
/// written again; with a backing file the data is also flushed before it is linked, so a kill never
/// shows unwritten clusters in place of the backing file's data. Writes are in QedNode.Write.cs.
/// </summary>
internal sealed partial class QedNode : BlockNode, IImageInfoSource
{
    /// <summary>L2 tables kept in memory at most (each is table-size clusters).</summary>
    private const int L2CacheLimit = 64;

    private readonly BlockNode _file;
    private readonly QedHeader _header;
    private readonly QedTable _l1;
    private readonly Dictionary<ulong, QedTable> _l2Cache = [];
    private readonly Lock _cacheLock = new();
    private readonly SemaphoreSlim _allocation = new(1, 1);
    private readonly int _clusterBits;
    private readonly int _l1Shift;
    private readonly string? _backingName;

    /// <summary>Counts L2 sector writes (twice each: before and after), so a table read meanwhile is not cached stale.</summary>
    private long _tableWrites;

    /// <summary>Where the next cluster goes: the end of the file in whole clusters (QEMU's file_size).</summary>
    private long _fileEnd;

    private QedNode(string nodeName, bool readOnly, BlockNode file, QedHeader header, QedTable l1, long fileEnd, string? backingName)
        : base(nodeName, readOnly)
    {
        _file = file;
        _header = header;
        _l1 = l1;
        _fileEnd = fileEnd;
        _backingName = backingName;
        _clusterBits = System.Numerics.BitOperations.Log2(header.ClusterSize);
        _l1Shift = _clusterBits + System.Numerics.BitOperations.Log2((uint)header.TableEntries);
        Length = (long)header.ImageSize;
        Limits = new BlockLimits(OptimalTransfer: (int)header.ClusterSize);
        Capabilities = new BlockCapabilities(WriteZeroes: true, Truncate: true, Backing: true);
        AttachChild("file", ChildRole.File, file, ChildUse.Metadata);
    }

    public override string DriverName => "qed";

    private long ClusterSize => _header.ClusterSize;

    /// <summary>The backing format the header implies: raw when probing is off, else none (probe).</summary>
    public string? BackingFormat => (_header.Features & QedFormat.FeatureBackingFormatNoProbe) != 0 ? "raw" : null;

    public BlockDriverInfo? DriverInfo => new(_header.ClusterSize, _header.NeedCheck);

    public BackingFileName? BackingFile => _backingName is null ? null : new BackingFileName(_backingName, BackingFormat);

    /// <summary>QEMU's qed has no format-specific record; the dirty flag is need-check.</summary>
    public FormatSpecificInfo? SpecificInfo => null;

    public bool NeedsCheck => _header.NeedCheck;

    internal string? HeaderBackingName => _backingName;

    internal void AttachBacking(BlockNode backing) => AttachChild("backing", ChildRole.Backing, backing);

    public static async ValueTask<QedNode> OpenAsync(string nodeName, bool readOnly, BlockNode file)
    {
        var head = new byte[QedFormat.HeaderLength];
        await file.ReadAsync(0, head.AsMemory(0, (int)Math.Min(file.Length, head.Length))).ConfigureAwait(false);
        var header = QedHeader.Read(head);
        var fileEnd = file.Length & ~(long)(header.ClusterSize - 1);
        header.Validate(fileEnd);
        string? backingName = null;
        if ((header.Features & QedFormat.FeatureBackingFile) != 0)
        {
            var name = new byte[header.BackingNameSize];
            if (header.BackingNameOffset + (long)name.Length > file.Length)
            {
                throw BlockException.Io("Failed to read backing filename");
            }

            await file.ReadAsync(header.BackingNameOffset, name).ConfigureAwait(false);
            backingName = System.Text.Encoding.UTF8.GetString(name);
        }

        var raw = new byte[header.TableBytes];
        await file.ReadAsync((long)header.L1TableOffset, raw).ConfigureAwait(false);
        var l1 = QedTable.Read(raw, header.TableEntries);
        var node = new QedNode(nodeName, readOnly, file, header, l1, fileEnd, backingName);
        if (!readOnly)
        {
            try
            {
                await node.PrepareForWritingAsync().ConfigureAwait(false);
            }
            catch
            {
                await node.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }

        return node;
    }

    /// <summary>
    /// Before writing: unknown autoclear bits are cleared (QEMU's compatibility rule) and an image not
    /// closed cleanly is checked and repaired.
    /// </summary>
    private async ValueTask PrepareForWritingAsync()
    {
        if (_header.AutoclearFeatures != 0)
        {
            _header.AutoclearFeatures = 0;
            await WriteHeaderAsync().ConfigureAwait(false);
            await _file.FlushAsync().ConfigureAwait(false);
        }

        if (_header.NeedCheck)
        {
            await CheckAsync(repair: true).ConfigureAwait(false);
        }
    }

    private async ValueTask WriteHeaderAsync()
    {
        var bytes = new byte[QedFormat.HeaderLength];
        _header.Write(bytes);
        await _file.WriteAsync(0, bytes).ConfigureAwait(false);
    }

    /// <summary>The L2 table at <paramref name="offset"/> (an L1 entry), read and checked on first use.</summary>
    private async ValueTask<QedTable> GetL2Async(int l1Index, ulong offset)
    {
        lock (_cacheLock)
        {
            if (_l2Cache.TryGetValue(offset, out var cached))
            {
                return cached;
            }
        }

        if (!_header.IsTableOffsetValid(offset, Volatile.Read(ref _fileEnd)))
        {
            throw BlockException.Io($"qed: L1 entry {l1Index} of '{FileName}' points at 0x{offset:x}, not a valid L2 table offset");
        }

        var raw = new byte[_header.TableBytes];
        while (true)
        {
            var version = Volatile.Read(ref _tableWrites);
            await _file.ReadAsync((long)offset, raw).ConfigureAwait(false);
            lock (_cacheLock)
            {
                if (_l2Cache.TryGetValue(offset, out var raced))
                {
                    return raced;
                }

                // An entry written while this copy was read may be missing from it: read again.
                if (version != _tableWrites)
                {
                    continue;
                }

                var table = QedTable.Read(raw, _header.TableEntries);
                if (_l2Cache.Count >= L2CacheLimit)
                {
                    _l2Cache.Remove(_l2Cache.Keys.First());
                }

                _l2Cache[offset] = table;
                return table;
            }
        }
    }


    /// <summary>The entry of the guest cluster at <paramref name="offset"/>, checked (QEMU's qed_find_cluster).</summary>
    private async ValueTask<ulong> EntryAsync(long offset)
    {
        var l1Index = (int)(offset >> _l1Shift);
        var l2Offset = _l1[l1Index];
        if (l2Offset == QedFormat.Unallocated)
        {
            return QedFormat.Unallocated;
        }

        var l2Index = (int)((offset >> _clusterBits) & (_header.TableEntries - 1));
        var entry = (await GetL2Async(l1Index, l2Offset).ConfigureAwait(false))[l2Index];
        if (entry > QedFormat.ZeroCluster && !_header.IsClusterOffsetValid(entry, Volatile.Read(ref _fileEnd)))
        {
            throw BlockException.Io($"qed: the entry of guest offset 0x{offset:x} in '{FileName}' points at 0x{entry:x}, not a valid cluster offset");
        }

        return entry;
    }

    private static QedClusterKind KindOf(ulong entry) => entry switch
    {
        QedFormat.Unallocated => QedClusterKind.Unallocated,
        QedFormat.ZeroCluster => QedClusterKind.Zero,
        _ => QedClusterKind.Data,
    };

    /// <summary>The mapping of [offset, offset+length): clusters of one kind, and for data contiguous in the file.</summary>
    private async ValueTask<QedMapping> MapAsync(long offset, long length)
    {
        var entry = await EntryAsync(offset).ConfigureAwait(false);
        var kind = KindOf(entry);
        var inCluster = offset & (ClusterSize - 1);
        var host = kind == QedClusterKind.Data ? (long)entry + inCluster : -1;
        var n = Math.Min(length, ClusterSize - inCluster);
        while (n < length)
        {
            var next = await EntryAsync(offset + n).ConfigureAwait(false);
            if (KindOf(next) != kind || (kind == QedClusterKind.Data && (long)next != host + n))
            {
                break;
            }

            n += Math.Min(length - n, ClusterSize);
        }

        return new QedMapping(kind, host, n);
    }

    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        while (buffer.Length > 0)
        {
            var m = await MapAsync(offset, buffer.Length).ConfigureAwait(false);
            var part = buffer[..(int)m.Length];
            switch (m.Kind)
            {
                case QedClusterKind.Data:
                    await _file.ReadAsync(m.Host, part).ConfigureAwait(false);
                    break;
                case QedClusterKind.Zero:
                    part.Span.Clear();
                    break;
                default:
                    await ReadBelowAsync(offset, part).ConfigureAwait(false);
                    break;
            }

            offset += m.Length;
            buffer = buffer[(int)m.Length..];
        }
    }

    /// <summary>The backing node's data, zeroes past its end or without one.</summary>
    private async ValueTask ReadBelowAsync(long offset, Memory<byte> buffer)
    {
        var backing = BackingChild?.Node;
        var n = backing is null ? 0 : (int)Math.Clamp(backing.Length - offset, 0, buffer.Length);
        if (n > 0)
        {
            await backing!.ReadAsync(offset, buffer[..n]).ConfigureAwait(false);
        }

        buffer.Span[n..].Clear();
    }

    /// <summary>This layer only: unallocated clusters are reported without Allocated so the caller asks the backing node.</summary>
    protected override async ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length)
    {
        var m = await MapAsync(offset, length).ConfigureAwait(false);
        var flags = m.Kind switch
        {
            QedClusterKind.Unallocated => BlockStatusFlags.None,
            QedClusterKind.Zero => BlockStatusFlags.Allocated | BlockStatusFlags.Zero,
            _ => BlockStatusFlags.Allocated | BlockStatusFlags.Data,
        };
        return new BlockStatus(m.Length, flags);
    }

    /// <summary>Growing only, to a size the tables address (QEMU's bdrv_qed_co_truncate).</summary>
    protected override async ValueTask TruncateCoreAsync(long length)
    {
        if (!QedFormat.IsImageSizeValid((ulong)length, _header.ClusterSize, _header.TableSize))
        {
            throw BlockException.Invalid("Invalid image size specified");
        }

        if (length < Length)
        {
            throw BlockException.NotSupported("Shrinking images is currently not supported");
        }

        await _allocation.WaitAsync().ConfigureAwait(false);
        try
        {
            var previous = _header.ImageSize;
            _header.ImageSize = (ulong)length;
            try
            {
                await WriteHeaderAsync().ConfigureAwait(false);
            }
            catch
            {
                _header.ImageSize = previous;
                throw;
            }

            Length = length;
        }
        finally
        {
            _allocation.Release();
        }
    }

    /// <summary>Flushes the allocations, then clears need-check (QEMU does it on an idle timer; a flush is where ours are known to be on disk).</summary>
    protected override async ValueTask FlushCoreAsync()
    {
        await _allocation.WaitAsync().ConfigureAwait(false);
        try
        {
            await _file.FlushAsync().ConfigureAwait(false);
            if (_header.NeedCheck && !IsReadOnly)
            {
                _header.Features &= ~QedFormat.FeatureNeedCheck;
                await WriteHeaderAsync().ConfigureAwait(false);
                await _file.FlushAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _allocation.Release();
        }
    }

    protected override async ValueTask ReopenCoreAsync(bool readOnly)
    {
        // Going read-only, the common path has flushed (which cleared need-check).
        if (!readOnly && _header.NeedCheck)
        {
            await CheckAsync(repair: true).ConfigureAwait(false);
        }
    }

    protected override async ValueTask DisposeCoreAsync()
    {
        if (!IsReadOnly)
        {
            await FlushCoreAsync().ConfigureAwait(false);
        }
    }
}
