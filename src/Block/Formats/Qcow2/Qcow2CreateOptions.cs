namespace ExportServer.Block.Formats.Qcow2;

/// <summary>Options of a new qcow2 image, with QEMU's defaults (blockdev-create / qemu-img create -o).</summary>
public sealed record Qcow2CreateOptions
{
    public required long Size { get; init; }

    public int ClusterSize { get; init; } = 65536;

    /// <summary>"1.1" (version 3, the default) or "0.10" (version 2).</summary>
    public string Compat { get; init; } = "1.1";

    public string? BackingFile { get; init; }

    public string? BackingFormat { get; init; }

    public Qcow2Preallocation Preallocation { get; init; }

    public bool LazyRefcounts { get; init; }

    public bool ExtendedL2 { get; init; }

    /// <summary>"zlib" or "zstd".</summary>
    public string CompressionType { get; init; } = "zlib";

    /// <summary>Name of the external data file recorded in the header (the node is passed to the creator).</summary>
    public string? DataFile { get; init; }

    public bool DataFileRaw { get; init; }

    public int RefcountBits { get; init; } = 16;
}
