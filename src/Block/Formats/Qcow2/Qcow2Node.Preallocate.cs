using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>Preallocation at creation: every guest cluster mapped to a host cluster, one L2 table at a time.</summary>
public sealed partial class Qcow2Node
{
    /// <summary>
    /// Maps every unmapped guest cluster. With extended L2 the subclusters stay unallocated (so a
    /// backing file still shows through); "full" also writes zeroes into the data clusters.
    /// </summary>
    internal async ValueTask PreallocateAsync(Qcow2Preallocation mode)
    {
        var clusters = AlignUp(Length, _clusterSize) >> _clusterBits;
        var perTable = 1L << _l2Bits;
        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            for (long gc = 0; gc < clusters;)
            {
                var chunkEnd = Math.Min(clusters, ((gc / perTable) + 1) * perTable);
                var count = (int)(chunkEnd - gc);
                var table = await GetWritableL2Async(gc << _clusterBits).ConfigureAwait(false);
                var host = HasExternalData ? gc << _clusterBits : await AllocateClustersLockedAsync(count).ConfigureAwait(false);
                for (var i = 0; i < count; i++)
                {
                    var guest = (gc + i) << _clusterBits;
                    WriteL2Entry(table, L2Index(guest), (ulong)(host + ((long)i << _clusterBits)) | Qcow2Format.FlagCopied, 0);
                }

                var bytes = (long)count << _clusterBits;
                if (_data.Length < host + bytes)
                {
                    await _data.TruncateAsync(host + bytes).ConfigureAwait(false);
                }

                if (mode == Qcow2Preallocation.Full)
                {
                    await _data.WriteZeroesAsync(host, bytes).ConfigureAwait(false);
                }

                await WriteBackIfFullLockedAsync().ConfigureAwait(false);
                gc = chunkEnd;
            }

            await WriteBackLockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _meta.Release();
        }
    }
}
