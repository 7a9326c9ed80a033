using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vhdx;

/// <summary>
/// Writes. A block with storage is written in place. A new block goes at the next MiB of the file;
/// its data is written and flushed (with every earlier BAT change), then the BAT sector that maps it
/// is written to the log and flushed, and only then in its place. A kill at any moment leaves either
/// the old BAT or a log entry that replays the new one, which QEMU and this driver replay on open.
/// The first write gives the headers new write GUIDs and a log GUID; closing clears the log GUID
/// once everything is flushed, so a cleanly closed image has no log to replay.
/// </summary>
internal sealed partial class VhdxNode
{
    private readonly SemaphoreSlim _meta = new(1, 1);
    private bool _logActive;
    private long _logPosition;
    private ulong _logSequence;

    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        while (buffer.Length > 0)
        {
            var n = BlockMapping.ChunkAt(offset, buffer.Length, _blockSize);
            var host = HostOffset(offset);
            if (host >= 0)
            {
                await _file.WriteAsync(host, buffer[..n]).ConfigureAwait(false);
            }
            else if (_differencing)
            {
                await WriteDifferencingAsync(offset, buffer[..n]).ConfigureAwait(false);
            }
            else
            {
                await AllocateAsync(offset, buffer[..n]).ConfigureAwait(false);
            }

            offset += n;
            buffer = buffer[n..];
        }
    }

    /// <summary>
    /// Zeroes without allocating: a block in any state without storage (not present, zero, unmapped)
    /// already reads as zeroes and keeps its state; a fully present one has its file zero the range.
    /// </summary>
    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags) =>
        _differencing
            ? ZeroDifferencingAsync(offset, length, flags)
            : BlockMapping.WriteZeroesAsync(offset, length, _blockSize, HostOffset,
                (o, n) => _file.WriteZeroesAsync(HostOffset(o), n, flags));

    private async ValueTask AllocateAsync(long offset, ReadOnlyMemory<byte> data)
    {
        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            if (HostOffset(offset) is var existing and >= 0)
            {
                await _file.WriteAsync(existing, data).ConfigureAwait(false);
                return;
            }

            await AllocateFullLockedAsync(offset, data).ConfigureAwait(false);
        }
        finally
        {
            _meta.Release();
        }
    }

    /// <summary>A new FULLY_PRESENT block holding <paramref name="data"/> (the rest reads as zeroes); the caller holds the metadata lock.</summary>
    private async ValueTask AllocateFullLockedAsync(long offset, ReadOnlyMemory<byte> data)
    {
        await StartLogAsync().ConfigureAwait(false);
        var block = offset / _blockSize;
        var start = await GrowAsync(_blockSize).ConfigureAwait(false);
        await _file.WriteAsync(start + (offset % _blockSize), data).ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);

        var previous = _table[block];
        _table.Set(block, (ulong)start | VhdxBlockTable.FullyPresent);
        try
        {
            await WriteThroughLogAsync([TableSector(_table.IndexOf(block))]).ConfigureAwait(false);
        }
        catch
        {
            _table.Set(block, previous);
            throw;
        }
    }

    /// <summary>Room for <paramref name="length"/> bytes at the next MiB past the end of the file (reading as zeroes); returns its offset.</summary>
    private async ValueTask<long> GrowAsync(long length)
    {
        var start = (_file.Length + VhdxFormat.MiB - 1) / VhdxFormat.MiB * VhdxFormat.MiB;
        await _file.TruncateAsync(start + length).ConfigureAwait(false);
        return start;
    }

    /// <summary>The 4 KiB sector of the BAT holding entry <paramref name="index"/>, as it is in memory, and its file offset.</summary>
    private (long At, byte[] Sector) TableSector(int index)
    {
        var sector = new byte[VhdxFormat.LogSectorSize];
        return (_table.EncodeSector(index, sector), sector);
    }

    /// <summary>Before the first change: new file and data write GUIDs and a log GUID in both headers.</summary>
    private async ValueTask StartLogAsync()
    {
        if (_logActive)
        {
            return;
        }

        (_header, _currentHeader) = await WriteHeadersAsync(_file, _header with
        {
            FileWriteGuid = Guid.NewGuid(),
            DataWriteGuid = Guid.NewGuid(),
            LogGuid = Guid.NewGuid(),
        }, _currentHeader).ConfigureAwait(false);
        _logActive = true;
        _logPosition = 0;
        _logSequence = 1;
    }

    /// <summary>Metadata sectors (4 KiB each, with their file offsets): one log entry, flushed, then each sector in place.</summary>
    private async ValueTask WriteThroughLogAsync(IReadOnlyList<(long At, byte[] Sector)> sectors)
    {
        var entry = VhdxLog.Build(_logSequence, _header.LogGuid, _logPosition, sectors, _file.Length);
        if (_logPosition + entry.Length > _header.LogLength)
        {
            _logPosition = 0;
            entry = VhdxLog.Build(_logSequence, _header.LogGuid, _logPosition, sectors, _file.Length);
        }

        await _file.WriteAsync((long)_header.LogOffset + _logPosition, entry).ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);
        _logPosition += entry.Length;
        _logSequence++;
        foreach (var (at, sector) in sectors)
        {
            await _file.WriteAsync(at, sector).ConfigureAwait(false);
        }
    }

    /// <summary>A read-only node that replayed its log in memory cannot become writable: the file still holds the log.</summary>
    protected override ValueTask ReopenCoreAsync(bool readOnly) =>
        !readOnly && !ReferenceEquals(_source, _file)
            ? throw BlockException.NotSupported("vhdx: the image has a log to replay; open it read-write to replay it into the file")
            : ValueTask.CompletedTask;

    protected override async ValueTask DisposeCoreAsync()
    {
        if (IsReadOnly || !_logActive)
        {
            return;
        }

        await _meta.WaitAsync().ConfigureAwait(false);
        try
        {
            await _file.FlushAsync().ConfigureAwait(false);
            (_header, _currentHeader) = await WriteHeadersAsync(_file, _header with { LogGuid = Guid.Empty }, _currentHeader).ConfigureAwait(false);
            _logActive = false;
        }
        finally
        {
            _meta.Release();
        }
    }
}
