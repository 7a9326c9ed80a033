using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// What happens below a cluster that is no longer used, as QEMU's qcow2 options decide it:
/// pass-discard-request (guest discards and zero writes that may unmap; default: the node's
/// discard=unmap), pass-discard-snapshot (deleting a snapshot; default on) and pass-discard-other
/// (metadata replaced by a copy: L1, L2 and refcount tables; default off) say whether the freed
/// clusters are discarded in the image file. Clusters a write copies away from and allocations
/// taken back are never discarded, as in QEMU, since the next write reuses them.
/// discard-no-unref keeps a discarded or unmapped data cluster allocated (marked zero) so that the
/// image does not fragment, and still discards its bytes in the file when requests are passed.
/// </summary>
public sealed partial class Qcow2Node
{
    private readonly Qcow2Options _options;

    /// <summary>While set (under the metadata lock), every cluster whose refcount drops to zero is collected here.</summary>
    private List<long>? _releasedSink;

    /// <summary>Refuses the discard and cache options that do not fit the image, with QEMU's words.</summary>
    private static void CheckOptions(Qcow2Header header, Qcow2Options options)
    {
        if (options.L2CacheEntrySize is { } entry &&
            (entry < 512 || entry > header.ClusterSize || (entry & (entry - 1)) != 0))
        {
            throw BlockException.Invalid($"L2 cache entry size must be a power of two between 512 and the cluster size ({header.ClusterSize})");
        }

        if (options.DiscardNoUnref && header.Version < 3)
        {
            throw BlockException.Invalid("discard-no-unref is only supported since qcow2 version 3");
        }

        if (options.EncryptFormat is { } format)
        {
            var inHeader = header.CryptMethod switch
            {
                Qcow2Format.CryptAes => "aes",
                Qcow2Format.CryptLuks => "luks",
                _ => null,
            };
            if (inHeader is null)
            {
                throw BlockException.Invalid($"No encryption in image header, but options specified format '{format}'");
            }

            if (inHeader != format)
            {
                throw BlockException.Invalid($"Header reported '{inHeader}' encryption format but options specify '{format}'");
            }
        }
    }

    /// <summary>Frees metadata clusters that a new copy replaced (QEMU's QCOW2_DISCARD_OTHER).</summary>
    private ValueTask FreeReplacedMetadataLockedAsync(long offset, int count) =>
        FreePassingLockedAsync(offset, count, _options.PassDiscardOther);

    private async ValueTask FreePassingLockedAsync(long offset, int count, bool pass)
    {
        var released = pass ? new List<long>() : null;
        await FreeClustersLockedAsync(offset, count, released).ConfigureAwait(false);
        if (released is { Count: > 0 })
        {
            await DiscardReleasedLockedAsync(released).ConfigureAwait(false);
        }
    }

    /// <summary>Runs a snapshot deletion, then discards what it freed when pass-discard-snapshot is on.</summary>
    private async ValueTask DeletingSnapshotLockedAsync(Func<ValueTask> delete)
    {
        var released = _options.PassDiscardSnapshot ? new List<long>() : null;
        _releasedSink = released;
        try
        {
            await delete().ConfigureAwait(false);
        }
        finally
        {
            _releasedSink = null;
        }

        if (released is { Count: > 0 })
        {
            await DiscardReleasedLockedAsync(released).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// With discard-no-unref, an entry that a discard or an unmapping zero write would free keeps its
    /// host cluster and reads as zeroes instead (compressed clusters are still freed, as in QEMU).
    /// Returns the host cluster whose bytes may be discarded in the file: only one this entry owns
    /// alone (COPIED), so that a snapshot sharing the cluster keeps its data.
    /// </summary>
    private bool KeepReference(ulong entry, ref ulong newEntry, ref ulong newBitmap, out long punch)
    {
        punch = 0;
        var host = (long)(entry & Qcow2Format.OffsetMask);
        if (!_options.DiscardNoUnref || HasExternalData || (entry & Qcow2Format.FlagCompressed) != 0 || host == 0)
        {
            return false;
        }

        if (_header.ExtendedL2)
        {
            newEntry = entry;
            newBitmap = Qcow2Format.BitmapAllZeroes;
        }
        else
        {
            newEntry = entry | Qcow2Format.FlagZero;
        }

        if ((entry & Qcow2Format.FlagCopied) != 0)
        {
            punch = host;
        }

        return true;
    }
}
