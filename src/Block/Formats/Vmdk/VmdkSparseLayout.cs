namespace ExportServer.Block.Formats.Vmdk;

/// <summary>The three sparse extent formats: they differ in headers and in how directory and table entries are read.</summary>
internal enum VmdkSparseKind
{
    /// <summary>Hosted sparse (KDMV): 32-bit sector numbers, optional zeroed grains, compression and markers.</summary>
    Hosted,

    /// <summary>ESX sparse (COWD): 32-bit sector numbers, 4096-entry grain tables.</summary>
    Cowd,

    /// <summary>seSparse: 64-bit entries, table and grain indexes instead of sectors, four entry kinds.</summary>
    SeSparse,
}

/// <summary>
/// Where a sparse extent keeps its metadata, as its header says (in bytes), once the header is
/// checked: the grain size, the grain table geometry and the grain directory (and its redundant copy).
/// </summary>
internal sealed record VmdkSparseLayout
{
    public required VmdkSparseKind Kind { get; init; }

    public required long Sectors { get; init; }

    public required long GrainBytes { get; init; }

    public required int TableEntries { get; init; }

    public required long DirectoryOffset { get; init; }

    public required long DirectoryEntries { get; init; }

    /// <summary>The redundant grain directory, kept in step on writes (0: none).</summary>
    public long RedundantDirectoryOffset { get; init; }

    public bool Compressed { get; init; }

    public bool Markers { get; init; }

    public bool ZeroGrains { get; init; }

    /// <summary>The grain directory is at the end of a stream (its footer said where); appending would lose the footer.</summary>
    public bool DirectoryAtEnd { get; init; }

    /// <summary>Hosted sparse version 3 (changed block tracking) without compression: readable, not writable.</summary>
    public bool ReadOnlyVersion { get; init; }

    /// <summary>seSparse: where grain tables and grains start (bytes), as indexes count from there.</summary>
    public long SeSparseTablesOffset { get; init; }

    public long SeSparseGrainsOffset { get; init; }

    /// <summary>seSparse: how many grain tables the grain tables area holds.</summary>
    public long SeSparseTableSlots { get; init; }

    /// <summary>seSparse: how many grains the grains area holds.</summary>
    public long SeSparseGrainSlots { get; init; }

    /// <summary>seSparse: the volatile header as read at open, and where it lies (bytes).</summary>
    public SeSparseVolatileHeader? SeSparseVolatile { get; init; }

    public long SeSparseVolatileOffset { get; init; }

    public int EntrySize => Kind == VmdkSparseKind.SeSparse ? 8 : 4;

    public int TableBytes => TableEntries * EntrySize;

    /// <summary>Bytes of the virtual disk one grain table maps.</summary>
    public long TableSpan => GrainBytes * TableEntries;
}
