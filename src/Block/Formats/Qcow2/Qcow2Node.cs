using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// A qcow2 image as a block node. Split by on-disk concern: the cluster map (L1/L2, ClusterMap.cs),
/// refcounts (Refcounts.cs), reads and block status (Read.cs), writes/zeroes/discard/resize
/// (Write.cs), snapshots (Snapshots.cs).
/// Concurrency: metadata changes run under one async lock (<see cref="_meta"/>); guest ranges whose
/// mapping may change are serialised per cluster by <see cref="_clusterLocks"/>; reads take no lock.
/// Crash safety (a kill at any moment leaves at most leaked clusters): refcount increments reach the
/// file, and are flushed, before any L2 or L1 entry pointing at the new cluster; guest data is written
/// before the L2 entry that maps it; an L2 entry is cleared and written before the refcount of the
/// cluster it pointed at is decremented.
/// </summary>
public sealed partial class Qcow2Node : BlockNode
{
    private readonly BlockNode _file;
    private readonly Qcow2Header _header;
    private readonly int _clusterBits;
    private readonly int _clusterSize;
    private readonly int _l2Bits;
    private readonly int _subclusterBits;
    private readonly Qcow2TableCache _l2Cache;
    private readonly Qcow2TableCache _refCache;
    private readonly SemaphoreSlim _meta = new(1, 1);
    private readonly RangeLock _clusterLocks = new();
    private readonly bool _lazyRefcounts;
    private readonly Timer? _cleanTimer;
    private BlockNode _data;
    private ulong[] _l1;
    private long _l1Offset;
    private List<Qcow2Snapshot> _snapshots;
    private bool _dirtyBitWritten;
    private string? _corruptReason;

    /// <summary>The data clusters' encryption, or null for an image without.</summary>
    private readonly Qcow2Encryption? _crypto;

    /// <summary>
    /// Where the image's use of its file ends: the file's length at open, then the end of every
    /// allocation. The file itself may reach further (see EnsureFileLengthAsync); what lies between
    /// was never written and reads as zeroes.
    /// </summary>
    private long _usedEnd;

    private Qcow2Node(string nodeName, bool readOnly, BlockNode file, Qcow2Header header, Qcow2Options options, Qcow2Encryption? crypto)
        : base(nodeName, readOnly)
    {
        _file = file;
        _crypto = crypto;
        _data = file;
        _usedEnd = file.Length;
        _header = header;
        _clusterBits = header.ClusterBits;
        _clusterSize = header.ClusterSize;
        _l2Bits = header.L2Bits;
        _subclusterBits = header.ExtendedL2 ? _clusterBits - 5 : _clusterBits;
        _l1 = [];
        _refTable = [];
        _snapshots = [];
        _l1Offset = header.L1TableOffset;
        _lazyRefcounts = options.LazyRefcounts ?? header.LazyRefcounts;
        _options = options;
        Length = header.Size;
        // Encrypted data is whole 512-byte sectors (QEMU sets the crypto sector size as the request alignment).
        Limits = new BlockLimits(RequestAlignment: crypto is null ? 1 : 512, DiscardGranularity: _clusterSize, OptimalTransfer: _clusterSize);
        Capabilities = new BlockCapabilities(
            WriteZeroes: header.Version >= 3,
            FastZero: header.Version >= 3,
            CompressedWriteSize: _clusterSize,
            Truncate: true,
            Backing: true);

        // Default L2 cache maps the whole image (capped); see Qcow2Options.
        var l2Tables = Math.Max(1L, ((header.Size >> _clusterBits) + (1L << _l2Bits) - 1) >> _l2Bits);
        var l2Bytes = options.L2CacheSize ?? Math.Min(l2Tables * _clusterSize, Qcow2Options.DefaultL2CacheMax);
        var refBytes = options.RefcountCacheSize ?? Math.Max(l2Bytes / 4, 4L * _clusterSize);
        _l2Cache = new Qcow2TableCache(file, _clusterSize, (int)Math.Clamp(l2Bytes / _clusterSize, 2, int.MaxValue));
        _refCache = new Qcow2TableCache(file, _clusterSize, (int)Math.Clamp(refBytes / _clusterSize, 4, int.MaxValue));
        if (options.CacheCleanInterval > 0)
        {
            var period = TimeSpan.FromSeconds(options.CacheCleanInterval);
            _cleanTimer = new Timer(_ => DropUnusedTables(), null, period, period);
        }
    }

    public override string DriverName => "qcow2";

    internal Qcow2Header Header => _header;

    internal int L2CacheCapacity => _l2Cache.Capacity;

    internal int RefcountCacheCapacity => _refCache.Capacity;

    internal int L2CacheCount => _l2Cache.Count;

    /// <summary>Why the image was marked corrupt during this session, if it was.</summary>
    public string? CorruptReason => _corruptReason;

    private long ClusterOffsetMask => ~((long)_clusterSize - 1);

    private bool HasExternalData => _header.HasDataFile;

    /// <summary>
    /// Reads and validates the header and the tables it points to. The caller attaches the backing
    /// node and the external data file (<see cref="AttachBacking"/>, <see cref="AttachDataFile"/>).
    /// </summary>
    internal static async ValueTask<Qcow2Node> OpenAsync(
        string nodeName, bool readOnly, BlockNode file, Qcow2Options options, NamedObjects? objects = null)
    {
        var fileLength = file.Length;
        var probe = new byte[(int)Math.Min(fileLength, 1 << Qcow2Format.MaxClusterBits)];
        if (probe.Length > 0)
        {
            await file.ReadAsync(0, probe).ConfigureAwait(false);
        }

        var cbits = probe.Length >= 24 ? BinaryPrimitives.ReadUInt32BigEndian(probe.AsSpan(20)) : 0;
        var headerBytes = cbits is >= Qcow2Format.MinClusterBits and <= Qcow2Format.MaxClusterBits
            ? probe.AsSpan(0, (int)Math.Min(probe.Length, 1L << (int)cbits))
            : probe;
        var header = Qcow2Header.Read(headerBytes, fileLength, file.FileName);
        await Qcow2BitmapDirectory.ValidateAsync(file, header).ConfigureAwait(false);
        if (options.Snapshot is not null)
        {
            readOnly = true;
        }

        if (!readOnly && header.IsCorrupt)
        {
            throw BlockException.Invalid($"qcow2: Image '{file.FileName}' is corrupt; cannot be opened read/write");
        }

        if (options.LazyRefcounts == true && header.Version < 3)
        {
            throw BlockException.Invalid("Lazy refcounts require a qcow2 image with at least qemu 1.1 compatibility level");
        }

        CheckOptions(header, options);
        Qcow2Encryption? crypto = null;
        if (header.CryptMethod != Qcow2Format.CryptNone)
        {
            var secret = options.EncryptKeySecret ?? throw BlockException.Invalid("Parameter 'encrypt.key-secret' is required for cipher");
            crypto = await Qcow2Encryption.OpenAsync(file, header, objects ?? new NamedObjects(), secret).ConfigureAwait(false);
            if (crypto.IsLegacyAes)
            {
                readOnly = true;
                await CloseWarningAsync(
                    $"warning: qcow2 image '{file.FileName}' is encrypted with the legacy AES-CBC method, which is only read here; " +
                    "opened read-only. Use of AES-CBC encrypted qcow2 images is no longer supported in system emulators. You can use " +
                    "'qemu-img convert' to convert your image to an alternative supported format, such as unencrypted qcow2, or raw " +
                    "with the LUKS format instead.").ConfigureAwait(false);
            }
        }

        var node = new Qcow2Node(nodeName, readOnly, file, header, options, crypto);
        try
        {
            node._l1 = await node.ReadL1Async(header.L1TableOffset, header.L1Size).ConfigureAwait(false);
            await node.LoadRefcountTableAsync().ConfigureAwait(false);
            await node.LoadSnapshotsAsync().ConfigureAwait(false);
            if (options.Snapshot is not null)
            {
                await node.SelectSnapshotAsync(options.Snapshot).ConfigureAwait(false);
            }
            else
            {
                await node.LoadBitmapsAsync().ConfigureAwait(false);
            }

            if (!readOnly)
            {
                await node.PrepareForWritingAsync().ConfigureAwait(false);
            }

            node.AttachChild("file", ChildRole.File, file, ChildUse.Metadata);
            return node;
        }
        catch
        {
            node._cleanTimer?.Dispose();
            crypto?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// On a read-write open: repair a dirty image's refcounts, clear the autoclear bits we do not
    /// maintain, and mark the stored bitmaps in use.
    /// </summary>
    private async ValueTask PrepareForWritingAsync()
    {
        if (_header.IsDirty)
        {
            await RebuildRefcountsAsync().ConfigureAwait(false);
            _header.IncompatibleFeatures &= ~Qcow2Format.IncompatDirty;
            await WriteIncompatibleFeaturesAsync().ConfigureAwait(false);
        }

        // A bitmaps extension left without its autoclear bit was made stale by a program unaware of
        // bitmaps: QEMU ignores it and drops it with the next header update (its clusters leak).
        var keep = _header.AutoclearFeatures & (Qcow2Format.AutoclearDataFileRaw | Qcow2Format.AutoclearBitmaps);
        var stale = _header.HasStaleBitmapsExtension;
        if (_header.AutoclearFeatures != keep || stale)
        {
            _header.AutoclearFeatures = keep;
            _header.Extensions.RemoveAll(x => stale && x.Type == Qcow2Format.ExtBitmaps);
            await WriteHeaderAsync().ConfigureAwait(false);
        }

        await MarkBitmapsInUseAsync().ConfigureAwait(false);
    }

    internal void AttachBacking(BlockNode backing) => AttachChild("backing", ChildRole.Backing, backing);

    internal void AttachDataFile(BlockNode dataFile)
    {
        _data = dataFile;
        AttachChild("data-file", ChildRole.File, dataFile, ChildUse.Data);
    }

    private async ValueTask<ulong[]> ReadL1Async(long offset, int entries)
    {
        var bytes = new byte[entries * 8];
        if (bytes.Length > 0)
        {
            await _file.ReadAsync(offset, bytes).ConfigureAwait(false);
        }

        var l1 = new ulong[entries];
        for (var i = 0; i < entries; i++)
        {
            l1[i] = BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(i * 8));
        }

        return l1;
    }

    /// <summary>Writes the whole header cluster (size, tables, extensions, backing name).</summary>
    private async ValueTask WriteHeaderAsync()
    {
        var buf = new byte[_clusterSize];
        _header.Write(buf);
        await _file.WriteAsync(0, buf).ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);
    }

    private async ValueTask WriteIncompatibleFeaturesAsync()
    {
        var buf = new byte[8];
        Qcow2Header.WriteIncompatibleFeatures(buf, _header.IncompatibleFeatures);
        await _file.WriteAsync(Qcow2Header.OffIncompatibleFeatures, buf).ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);
    }

    /// <summary>Lazy refcounts: the dirty bit is set (and flushed) before the first metadata change.</summary>
    private async ValueTask MarkDirtyAsync()
    {
        if (!_lazyRefcounts || _dirtyBitWritten)
        {
            return;
        }

        _header.IncompatibleFeatures |= Qcow2Format.IncompatDirty;
        await WriteIncompatibleFeaturesAsync().ConfigureAwait(false);
        _dirtyBitWritten = true;
    }

    /// <summary>
    /// Writes every dirty table in dependency order: refcount blocks, flush, L2 tables. With lazy
    /// refcounts the L2 tables do not wait for the refcounts (the dirty bit covers them).
    /// The caller holds the metadata lock.
    /// </summary>
    private async ValueTask WriteBackLockedAsync()
    {
        if (_refCache.DirtyCount > 0)
        {
            await _refCache.WriteBackAsync().ConfigureAwait(false);
            if (_l2Cache.DirtyCount > 0 && !_lazyRefcounts)
            {
                await _file.FlushAsync().ConfigureAwait(false);
            }
        }

        if (_l2Cache.DirtyCount > 0)
        {
            // Guest data of newly mapped clusters is flushed before the L2 entries that expose it.
            if (_data != _file)
            {
                await _data.FlushAsync().ConfigureAwait(false);
            }

            await _l2Cache.WriteBackAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Writes back when dirty tables hold a cache above its size (clean ones are evicted first), so
    /// a cache that maps the whole image is only written on flush, as QEMU does.
    /// </summary>
    private async ValueTask WriteBackIfFullLockedAsync()
    {
        if (_l2Cache.Count > _l2Cache.Capacity || _refCache.Count > _refCache.Capacity)
        {
            await WriteBackLockedAsync().ConfigureAwait(false);
        }
    }

    protected override async ValueTask FlushCoreAsync()
    {
        if (!IsReadOnly)
        {
            await _meta.WaitAsync().ConfigureAwait(false);
            try
            {
                await WriteBackLockedAsync().ConfigureAwait(false);
            }
            finally
            {
                _meta.Release();
            }
        }

        if (_data != _file)
        {
            await _data.FlushAsync().ConfigureAwait(false);
        }

        await _file.FlushAsync().ConfigureAwait(false);
    }

    private static string StrError(Exception e) => Native.LibC.StrError((int)BlockException.From(e).Errno);

    /// <summary>A problem met while closing, on stderr as QEMU's error_report prints it.</summary>
    private static Task CloseWarningAsync(string message) =>
        Console.Error.WriteLineAsync($"{Path.GetFileName(Environment.ProcessPath) ?? "export-server"}: {message}");

    private void DropUnusedTables()
    {
        _l2Cache.DropUnused();
        _refCache.DropUnused();
    }

    protected override async ValueTask DisposeCoreAsync()
    {
        try
        {
            await CloseAsync().ConfigureAwait(false);
        }
        finally
        {
            // Last: closing writes tables back, never data, but the key stays until nothing can need it.
            _crypto?.Dispose();
        }
    }

    private async ValueTask CloseAsync()
    {
        if (_cleanTimer is not null)
        {
            await _cleanTimer.DisposeAsync().ConfigureAwait(false);
        }

        if (IsReadOnly || _corruptReason is not null)
        {
            return;
        }

        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            try
            {
                await StoreBitmapsLockedAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // The image stays consistent: bitmaps not stored are still marked in use there and
                // load as inconsistent next time, never as silently stale.
                await CloseWarningAsync(
                    $"Lost persistent bitmaps during inactivation of node '{NodeName}': Failed to store the bitmaps: {StrError(e)}").ConfigureAwait(false);
            }

            try
            {
                await WriteBackLockedAsync().ConfigureAwait(false);
                if (_file.Length > _usedEnd)
                {
                    // The growth step the file was extended by but never used. A protocol that cannot
                    // shrink (ssh) keeps it: nothing refers to it, and qemu-img check finds the image clean.
                    try
                    {
                        await _file.TruncateAsync(_usedEnd).ConfigureAwait(false);
                    }
                    catch (BlockException e) when (e.Errno == Errno.ENOTSUP)
                    {
                    }
                }

                await _file.FlushAsync().ConfigureAwait(false);
                if (_dirtyBitWritten)
                {
                    _header.IncompatibleFeatures &= ~Qcow2Format.IncompatDirty;
                    await WriteIncompatibleFeaturesAsync().ConfigureAwait(false);
                    _dirtyBitWritten = false;
                }
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // As QEMU's qcow2_inactivate, a close that cannot write its tables says so and ends;
                // the image keeps its dirty bit (or the tables it had), so the next open checks it.
                if (_l2Cache.DirtyCount > 0)
                {
                    await CloseWarningAsync($"Failed to flush the L2 table cache: {StrError(e)}").ConfigureAwait(false);
                }

                if (_refCache.DirtyCount > 0)
                {
                    await CloseWarningAsync($"Failed to flush the refcount block cache: {StrError(e)}").ConfigureAwait(false);
                }
            }
        }
        finally
        {
            _meta.Release();
        }
    }
}
