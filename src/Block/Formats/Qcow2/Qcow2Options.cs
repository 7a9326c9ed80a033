namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// The qcow2 runtime options (QEMU's names). Cache sizes are in bytes; null means the default:
/// an L2 cache large enough to map the whole image, at most <see cref="DefaultL2CacheMax"/>
/// (128 MiB maps 1 TiB of guest with 64 KiB clusters, so random reads of such an image never reload
/// a table; memory is only used for tables actually read), and a refcount cache of a quarter of it,
/// at least four clusters. cache-clean-interval drops tables unused for that many seconds (QEMU: 600).
/// </summary>
internal sealed record Qcow2Options
{
    public const long DefaultL2CacheMax = 128L * 1024 * 1024;
    public const int DefaultCacheCleanInterval = 600;

    public bool? LazyRefcounts { get; init; }

    public long? L2CacheSize { get; init; }

    public long? RefcountCacheSize { get; init; }

    public int CacheCleanInterval { get; init; } = DefaultCacheCleanInterval;

    /// <summary>
    /// The pass-discard-* options: whether clusters freed for that cause are discarded in the file.
    /// Unset, pass-discard-request follows the node's discard option, as QEMU's default does.
    /// </summary>
    public bool? PassDiscardRequest { get; init; }

    public bool PassDiscardSnapshot { get; init; } = true;

    public bool PassDiscardOther { get; init; }

    /// <summary>discard-no-unref (QEMU 8.1): discarded data clusters stay allocated, reading as zeroes.</summary>
    public bool DiscardNoUnref { get; init; }

    /// <summary>Checked as QEMU checks it; the table cache here always holds whole L2 tables.</summary>
    public long? L2CacheEntrySize { get; init; }

    /// <summary>encrypt.format (aes or luks): checked against the image header's crypt method.</summary>
    public string? EncryptFormat { get; init; }

    /// <summary>encrypt.key-secret: the secret object holding the passphrase of an encrypted image.</summary>
    public string? EncryptKeySecret { get; init; }

    /// <summary>Open this internal snapshot (by id, then by name) instead of the active image; forces read-only.</summary>
    public string? Snapshot { get; init; }
}
