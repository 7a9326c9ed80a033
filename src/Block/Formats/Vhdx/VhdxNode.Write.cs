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
            if (host < 0)
            {
                await AllocateAsync(offset, buffer[..n]).ConfigureAwait(false);
            }
            else
            {
                await _file.WriteAsync(host, buffer[..n]).ConfigureAwait(false);
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
        BlockMapping.WriteZeroesAsync(offset, length, _blockSize, HostOffset,
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

            await StartLogAsync().ConfigureAwait(false);
            var block = offset / _blockSize;
            var start = (_file.Length + VhdxFormat.MiB - 1) / VhdxFormat.MiB * VhdxFormat.MiB;
            await _file.TruncateAsync(start + _blockSize).ConfigureAwait(false);
            await _file.WriteAsync(start + (offset % _blockSize), data).ConfigureAwait(false);
            await _file.FlushAsync().ConfigureAwait(false);

            var previous = _table[block];
            _table.Set(block, (ulong)start | VhdxBlockTable.FullyPresent);
            try
            {
                await WriteThroughLogAsync(block).ConfigureAwait(false);
            }
            catch
            {
                _table.Set(block, previous);
                throw;
            }
        }
        finally
        {
            _meta.Release();
        }
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

    /// <summary>The BAT sector of <paramref name="block"/>: a log entry, flushed, then the sector in place.</summary>
    private async ValueTask WriteThroughLogAsync(long block)
    {
        var sector = new byte[VhdxFormat.LogSectorSize];
        var at = _table.EncodeSector(block, sector);
        var entry = VhdxLog.Build(_logSequence, _header.LogGuid, _logPosition, at, sector, _file.Length);
        if (_logPosition + entry.Length > _header.LogLength)
        {
            _logPosition = 0;
            entry = VhdxLog.Build(_logSequence, _header.LogGuid, _logPosition, at, sector, _file.Length);
        }

        await _file.WriteAsync((long)_header.LogOffset + _logPosition, entry).ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);
        _logPosition += entry.Length;
        _logSequence++;
        await _file.WriteAsync(at, sector).ConfigureAwait(false);
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
