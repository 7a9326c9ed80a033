using System.Collections;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qed;

/// <summary>
/// The consistency check of an image not closed cleanly (QEMU's qed_check): every table offset and
/// cluster offset must be aligned, past the header and inside the file, and every cluster referenced
/// once. Repair clears the entries that point outside the file (their clusters then read from below)
/// and, beyond QEMU, cuts unreferenced clusters off the end of the file, which is where an allocation
/// interrupted by a kill leaves them. need-check is cleared when nothing uncorrectable remains.
/// </summary>
internal sealed partial class QedNode
{
    public async ValueTask<QedCheckResult> CheckAsync(bool repair)
    {
        await _allocation.WaitAsync().ConfigureAwait(false);
        try
        {
            var result = await CheckLockedAsync(repair).ConfigureAwait(false);
            lock (_cacheLock)
            {
                _l2Cache.Clear();
                _tableWrites++;
            }

            return result;
        }
        finally
        {
            _allocation.Release();
        }
    }

    private async ValueTask<QedCheckResult> CheckLockedAsync(bool repair)
    {
        var clusters = _fileEnd >> _clusterBits;
        if (clusters > int.MaxValue)
        {
            throw BlockException.NotSupported($"qed: '{FileName}' has too many clusters to check");
        }

        var used = new BitArray((int)clusters);
        var corruptions = 0;
        var repaired = 0;
        bool MarkUsed(ulong offset, long count)
        {
            var ok = true;
            for (var c = (int)(offset >> _clusterBits); count-- > 0; c++)
            {
                ok &= !used[c];
                used[c] = true;
            }

            return ok;
        }

        MarkUsed(_header.L1TableOffset, _header.TableSize);
        var raw = new byte[_header.TableBytes];
        for (var i = 0; i < _l1.Count; i++)
        {
            var l2Offset = _l1[i];
            if (l2Offset == QedFormat.Unallocated)
            {
                continue;
            }

            if (!_header.IsTableOffsetValid(l2Offset, _fileEnd))
            {
                if (repair)
                {
                    await WriteEntrySectorAsync(_l1, (long)_header.L1TableOffset, i, QedFormat.Unallocated).ConfigureAwait(false);
                    repaired++;
                }
                else
                {
                    corruptions++;
                }

                continue;
            }

            if (!MarkUsed(l2Offset, _header.TableSize))
            {
                corruptions++;
                continue;
            }

            await _file.ReadAsync((long)l2Offset, raw).ConfigureAwait(false);
            var l2 = QedTable.Read(raw, _header.TableEntries);
            var invalid = 0;
            for (var j = 0; j < l2.Count; j++)
            {
                var entry = l2[j];
                if (entry <= QedFormat.ZeroCluster)
                {
                    continue;
                }

                if (!_header.IsClusterOffsetValid(entry, _fileEnd))
                {
                    invalid++;
                    l2[j] = QedFormat.Unallocated;
                    continue;
                }

                if (!MarkUsed(entry, 1))
                {
                    corruptions++;
                }
            }

            if (invalid > 0 && repair)
            {
                l2.Encode(0, l2.Count, raw);
                await _file.WriteAsync((long)l2Offset, raw).ConfigureAwait(false);
                repaired += invalid;
            }
            else
            {
                corruptions += invalid;
            }
        }

        var lastUsed = (int)clusters - 1;
        while (lastUsed >= (int)_header.HeaderSize && !used[lastUsed])
        {
            lastUsed--;
        }

        if (repair && lastUsed + 1 < clusters)
        {
            _fileEnd = (long)(lastUsed + 1) << _clusterBits;
            await _file.TruncateAsync(_fileEnd).ConfigureAwait(false);
            clusters = lastUsed + 1;
        }

        long leaks = 0;
        for (var c = (int)_header.HeaderSize; c < clusters; c++)
        {
            leaks += used[c] ? 0 : 1;
        }

        if (repair && corruptions == 0 && _header.NeedCheck)
        {
            await _file.FlushAsync().ConfigureAwait(false);
            _header.Features &= ~QedFormat.FeatureNeedCheck;
            await WriteHeaderAsync().ConfigureAwait(false);
            await _file.FlushAsync().ConfigureAwait(false);
        }

        return new QedCheckResult(corruptions, leaks, repaired);
    }
}
