using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// One extent of a VMDK image: a run of the virtual disk stored in one file, flat (raw bytes at an
/// offset) or sparse (grain directory and tables). Offsets given to an extent are relative to its start.
/// </summary>
internal abstract class VmdkExtent(BlockNode file, long start, long length, string type)
{
    public BlockNode File { get; } = file;

    /// <summary>Where the extent begins on the virtual disk, in bytes.</summary>
    public long Start { get; } = start;

    public long Length { get; } = length;

    public long End => Start + Length;

    /// <summary>The type its descriptor line names (FLAT, SPARSE, …), or "" for the extent of a monolithic sparse file.</summary>
    public string Type { get; } = type;

    public abstract bool IsFlat { get; }

    public virtual bool IsCompressed => false;

    /// <summary>Bytes per grain; null for flat extents.</summary>
    public virtual long? GrainSize => null;

    /// <summary>How the first bytes of [offset, offset+length) are mapped; never crosses a grain.</summary>
    public abstract ValueTask<VmdkGrain> MapAsync(long offset, long length);

    /// <summary>Writes metadata changes kept in memory (grain tables) to the file, data first.</summary>
    public virtual ValueTask WriteBackAsync() => ValueTask.CompletedTask;

    /// <summary>The last write-back when a writable node closes.</summary>
    public virtual ValueTask CloseAsync() => WriteBackAsync();
}
