namespace ExportServer.Block.Core;

/// <summary>
/// What a node can do beyond reading and writing, set by its driver when it opens (next to
/// <see cref="BlockLimits"/>). The common I/O path reads it to decide what to emulate: a write
/// flagged FUA is followed by a flush without <paramref name="Fua"/>, zero writes become written
/// zero buffers without <paramref name="WriteZeroes"/>.
/// </summary>
/// <param name="Fua">The driver persists a write flagged FUA by itself.</param>
/// <param name="WriteZeroes">The driver implements write-zeroes.</param>
/// <param name="FastZero">Zero writes may be fast (no data written); tells NBD clients about FAST_ZERO.</param>
/// <param name="CompressedWriteSize">
/// The unit of compressed writes (a qcow2 cluster), or 0 when the node refuses
/// <see cref="WriteFlags.Compressed"/> with ENOTSUP. Filters do not forward it, as QEMU's filters do
/// not implement compressed writes themselves.
/// </param>
/// <param name="Truncate">The node may change size.</param>
/// <param name="Backing">The format can have a backing node (qcow2 can, raw cannot).</param>
public sealed record BlockCapabilities(
    bool Fua = false,
    bool WriteZeroes = false,
    bool FastZero = false,
    int CompressedWriteSize = 0,
    bool Truncate = false,
    bool Backing = false)
{
    public static BlockCapabilities None { get; } = new();

    /// <summary>A driver that writes zeroes without transferring data (fast zeroes included).</summary>
    public static BlockCapabilities Zeroing { get; } = new(WriteZeroes: true, FastZero: true);
}
