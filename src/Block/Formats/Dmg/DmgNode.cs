using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Dmg;

/// <summary>
/// A dmg (UDIF) image, read-only: the disk is a sorted list of chunks, each zeroes, raw bytes of the
/// file, or one compressed stream (zlib, bzip2). The last chunk decoded is kept, as QEMU keeps it,
/// since reads come in pieces smaller than a chunk. Sectors in no chunk, chunk types we cannot decode
/// (ADC, lzfse) and streams that do not decode to their chunk's size are I/O errors that say which.
/// </summary>
internal sealed class DmgNode : BlockNode
{
    private const int SectorSize = 512;

    private readonly BlockNode _file;
    private readonly DmgChunk[] _chunks;
    private readonly SemaphoreSlim _cacheLock = new(1, 1);
    private byte[]? _cached;
    private int _cachedChunk = -1;

    private DmgNode(string nodeName, BlockNode file, long sectors, DmgChunk[] chunks)
        : base(nodeName, readOnly: true)
    {
        _file = file;
        _chunks = chunks;
        Length = sectors * SectorSize;
        Limits = new BlockLimits(RequestAlignment: SectorSize);
        AttachChild("file", ChildRole.File, file, ChildUse.Metadata);
    }

    public override string DriverName => "dmg";

    public static async ValueTask<DmgNode> OpenAsync(string nodeName, BlockNode file)
    {
        var fileLength = file.Length;
        if (fileLength < 512)
        {
            throw BlockException.Invalid("dmg file must be at least 512 bytes long");
        }

        var tail = new byte[Math.Min(fileLength, 515)];
        await file.ReadAsync(fileLength - tail.Length, tail).ConfigureAwait(false);
        var at = DmgTrailer.Find(tail, fileLength);
        if (at < 0)
        {
            throw BlockException.Invalid("Could not locate UDIF trailer in dmg file");
        }

        var raw = new byte[DmgTrailer.Size];
        await file.ReadAsync(at, raw.AsMemory(0, (int)Math.Min(raw.Length, fileLength - at))).ConfigureAwait(false);
        var trailer = DmgTrailer.Read(raw, at);
        var table = new DmgTable(trailer.DataForkOffset, file.FileName);
        if (trailer.ResourceForkLength != 0)
        {
            await table.ReadResourceForkAsync(file, (long)trailer.ResourceForkOffset, (long)trailer.ResourceForkLength).ConfigureAwait(false);
        }
        else
        {
            await table.ReadPropertyListAsync(file, (long)trailer.XmlOffset, (long)trailer.XmlLength).ConfigureAwait(false);
        }

        return new DmgNode(nodeName, file, trailer.SectorCount, table.Sorted());
    }

    /// <summary>Never reached: the node is read-only and the common path refuses writes first.</summary>
    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags) => ReadOnlyFormat.RefuseWrite();

    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        await _cacheLock.WaitAsync().ConfigureAwait(false);
        try
        {
            while (buffer.Length > 0)
            {
                var sector = offset / SectorSize;
                var index = Find(sector);
                if (index < 0)
                {
                    throw BlockException.Io($"dmg: sector {sector} of '{FileName}' lies in no chunk");
                }

                var chunk = _chunks[index];
                var inChunk = (offset - (chunk.Sector * SectorSize));
                var n = (int)Math.Min(buffer.Length, (chunk.SectorCount * SectorSize) - inChunk);
                var part = buffer[..n];
                if (chunk.IsZero)
                {
                    part.Span.Clear();
                }
                else if (chunk.Type == DmgChunkType.Raw)
                {
                    await ReadRawAsync(index, chunk, inChunk, part).ConfigureAwait(false);
                }
                else
                {
                    var data = await DecodeAsync(index, chunk).ConfigureAwait(false);
                    data.AsSpan((int)inChunk, n).CopyTo(part.Span);
                }

                offset += n;
                buffer = buffer[n..];
            }
        }
        finally
        {
            _cacheLock.Release();
        }
    }

    /// <summary>The index of the chunk holding <paramref name="sector"/>, or -1.</summary>
    private int Find(long sector)
    {
        int lo = 0, hi = _chunks.Length - 1, found = -1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >>> 1;
            if (_chunks[mid].Sector <= sector)
            {
                found = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        // Chunks of no sectors may share a first sector with the one that holds it: look back past them.
        while (found >= 0 && _chunks[found].Sector + _chunks[found].SectorCount <= sector)
        {
            if (found == 0 || _chunks[found - 1].Sector != _chunks[found].Sector)
            {
                return -1;
            }

            found--;
        }

        return found;
    }

    /// <summary>A raw chunk's bytes from the file; what its stored length does not cover reads as zeroes.</summary>
    private async ValueTask ReadRawAsync(int index, DmgChunk chunk, long inChunk, Memory<byte> part)
    {
        var stored = (int)Math.Clamp(chunk.Length - inChunk, 0, part.Length);
        if (stored > 0)
        {
            var from = chunk.Offset + inChunk;
            if (from + stored > _file.Length)
            {
                throw BlockException.Io($"dmg: chunk {index} of '{FileName}' extends beyond the end of the file");
            }

            await _file.ReadAsync(from, part[..stored]).ConfigureAwait(false);
        }

        part.Span[stored..].Clear();
    }

    /// <summary>Chunk <paramref name="index"/> decoded whole (kept until another is needed).</summary>
    private async ValueTask<byte[]> DecodeAsync(int index, DmgChunk chunk)
    {
        if (index == _cachedChunk && _cached is not null)
        {
            return _cached;
        }

        if (chunk.Type is not (DmgChunkType.Zlib or DmgChunkType.Bzip2))
        {
            throw BlockException.Io($"dmg: chunk {index} of '{FileName}' is {chunk.TypeName}, which is not supported");
        }

        if (chunk.Offset + chunk.Length > _file.Length)
        {
            throw BlockException.Io($"dmg: chunk {index} of '{FileName}' extends beyond the end of the file");
        }

        var compressed = new byte[chunk.Length];
        await _file.ReadAsync(chunk.Offset, compressed).ConfigureAwait(false);
        var size = (int)(chunk.SectorCount * SectorSize);
        _cachedChunk = -1;
        if (_cached is null || _cached.Length != size)
        {
            _cached = new byte[size];
        }

        var ok = chunk.Type == DmgChunkType.Zlib ? ZlibInflate.Exact(compressed, _cached) : Bzip2Native.Exact(compressed, _cached);
        if (!ok)
        {
            throw BlockException.Io($"dmg: {chunk.TypeName} chunk {index} of '{FileName}' does not decode to {size} bytes");
        }

        _cachedChunk = index;
        return _cached;
    }
}
