using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qed;

/// <summary>
/// Write-zeroes as QEMU's bdrv_qed_co_pwrite_zeroes: a whole cluster without data of its own becomes
/// a zero cluster (L2 entry 1; an L2 table is added where there is none), one with data has zeroes
/// written in place, one already zero is left alone; the parts of clusters at either end are zeroed
/// in place or written, unless they read as zeroes already. Discard stays a no-op, as QEMU's qed has none.
/// </summary>
internal sealed partial class QedNode
{
    private static readonly byte[] s_zeroes = new byte[64 * 1024];

    protected override async ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags)
    {
        if ((flags & ZeroFlags.NoFallback) != 0)
        {
            // QEMU's qed takes no BDRV_REQ_NO_FALLBACK: a fast zero is refused, not emulated.
            throw BlockException.NotSupported($"Node '{NodeName}' cannot write zeroes quickly");
        }

        var end = offset + length;
        while (offset < end)
        {
            var inCluster = offset & (ClusterSize - 1);
            var n = Math.Min(end - offset, ClusterSize - inCluster);
            if (n < ClusterSize)
            {
                await WritePartialZeroesAsync(offset, n).ConfigureAwait(false);
                offset += n;
                continue;
            }

            var m = await MapAsync(offset, (end - offset) & ~(ClusterSize - 1)).ConfigureAwait(false);
            switch (m.Kind)
            {
                case QedClusterKind.Data:
                    await _file.WriteZeroesAsync(m.Host, m.Length).ConfigureAwait(false);
                    break;
                case QedClusterKind.Unallocated:
                    await MarkZeroAsync(offset, m.Length).ConfigureAwait(false);
                    break;
            }

            offset += m.Length;
        }
    }

    /// <summary>
    /// Zeroes inside one cluster: in place in a data cluster; nothing where the cluster reads as zeroes
    /// already (a zero cluster, or unallocated with nothing below); else written as data, which gives
    /// the cluster its own copy of what lies below (QEMU writes a zero buffer in every case).
    /// </summary>
    private async ValueTask WritePartialZeroesAsync(long offset, long length)
    {
        var m = await MapAsync(offset, length).ConfigureAwait(false);
        var backing = BackingChild?.Node;
        if (m.Kind == QedClusterKind.Zero || (m.Kind == QedClusterKind.Unallocated && (backing is null || backing.Length <= offset)))
        {
            return;
        }

        if (m.Kind == QedClusterKind.Data)
        {
            await _file.WriteZeroesAsync(m.Host, length).ConfigureAwait(false);
            return;
        }

        while (length > 0)
        {
            var n = (int)Math.Min(length, s_zeroes.Length);
            await WriteCoreAsync(offset, s_zeroes.AsMemory(0, n), WriteFlags.None).ConfigureAwait(false);
            offset += n;
            length -= n;
        }
    }

    /// <summary>Makes each unallocated whole cluster of [offset, offset+length) a zero cluster, under the allocation lock.</summary>
    private async ValueTask MarkZeroAsync(long offset, long length)
    {
        await _allocation.WaitAsync().ConfigureAwait(false);
        try
        {
            for (var at = offset; at < offset + length; at += ClusterSize)
            {
                // Another request may have allocated it meanwhile; then its data is zeroed in place.
                var m = await MapAsync(at, ClusterSize).ConfigureAwait(false);
                if (m.Kind == QedClusterKind.Data)
                {
                    await _file.WriteZeroesAsync(m.Host, ClusterSize).ConfigureAwait(false);
                }
                else if (m.Kind == QedClusterKind.Unallocated)
                {
                    await SetNeedCheckAsync().ConfigureAwait(false);
                    await LinkAsync(at, QedFormat.ZeroCluster).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            _allocation.Release();
        }
    }
}
