namespace ExportServer.Block.Core;

/// <summary>
/// The node option detect-zeroes, as QEMU's bdrv_aligned_pwritev applies it: a write whose buffer
/// holds only zero bytes is passed on as a write-zeroes request (keeping FUA), with may-unmap for
/// detect-zeroes=unmap, when the driver can write zeroes. The option costs nothing while it is off.
/// </summary>
public abstract partial class BlockNode
{
    /// <summary>The node's option 'detect-zeroes'; unmap is only accepted with discard=unmap.</summary>
    public DetectZeroes DetectZeroes { get; set; }

    /// <summary>
    /// Whether this write is to become a write-zeroes request, and with which flags. Compressed writes
    /// are included, as in QEMU, where a zero write never reaches the compressing path.
    /// </summary>
    private bool IsDetectedZeroWrite(ReadOnlySpan<byte> buffer, WriteFlags flags, out ZeroFlags zeroFlags)
    {
        zeroFlags = ZeroFlags.None;
        if (DetectZeroes == DetectZeroes.Off || !SupportsWriteZeroes || buffer.ContainsAnyExcept((byte)0))
        {
            return false;
        }

        zeroFlags = ((flags & WriteFlags.Fua) != 0 ? ZeroFlags.Fua : ZeroFlags.None) |
                    (DetectZeroes == DetectZeroes.Unmap && DiscardUnmap ? ZeroFlags.MayUnmap : ZeroFlags.None);
        return true;
    }
}
