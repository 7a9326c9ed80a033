using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Cloop;

/// <summary>
/// A cloop image, read-only: each block of the disk is one zlib stream in the file. The last block
/// inflated is kept, as QEMU keeps it, since reads come in pieces smaller than a block.
/// </summary>
internal sealed class CloopNode : BlockNode
{
    private readonly BlockNode _file;
    private readonly CloopHeader _header;
    private readonly long[] _offsets;
    private readonly SemaphoreSlim _cacheLock = new(1, 1);
    private byte[]? _cached;
    private long _cachedBlock = -1;

    private CloopNode(string nodeName, BlockNode file, CloopHeader header, long[] offsets)
        : base(nodeName, readOnly: true)
    {
        _file = file;
        _header = header;
        _offsets = offsets;
        Length = (long)header.BlockCount * header.BlockSize;
        AttachChild("file", ChildRole.File, file, ChildUse.Metadata);
    }

    public override string DriverName => "cloop";

    public static async ValueTask<CloopNode> OpenAsync(string nodeName, BlockNode file)
    {
        var head = new byte[CloopHeader.OffOffsets];
        await ReadFileAsync(file, 0, head).ConfigureAwait(false);
        var header = CloopHeader.Read(head);
        var raw = new byte[header.OffsetsBytes];
        await ReadFileAsync(file, CloopHeader.OffOffsets, raw).ConfigureAwait(false);
        return new CloopNode(nodeName, file, header, header.ReadOffsets(raw));
    }

    /// <summary>Metadata from the file; what lies past its end is refused as QEMU's short read is.</summary>
    private static async ValueTask ReadFileAsync(BlockNode file, long offset, Memory<byte> buffer)
    {
        if (offset + buffer.Length > file.Length)
        {
            throw BlockException.Io($"cloop: '{file.FileName}' is too short for its header");
        }

        await file.ReadAsync(offset, buffer).ConfigureAwait(false);
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
                var block = offset / _header.BlockSize;
                var inBlock = (int)(offset % _header.BlockSize);
                var n = (int)Math.Min(buffer.Length, _header.BlockSize - inBlock);
                var data = await InflateAsync(block).ConfigureAwait(false);
                data.AsSpan(inBlock, n).CopyTo(buffer.Span);
                offset += n;
                buffer = buffer[n..];
            }
        }
        finally
        {
            _cacheLock.Release();
        }
    }

    /// <summary>Block <paramref name="block"/> inflated (QEMU's cloop_read_block: a stream that is not exactly one block is an I/O error).</summary>
    private async ValueTask<byte[]> InflateAsync(long block)
    {
        if (block == _cachedBlock && _cached is not null)
        {
            return _cached;
        }

        var start = _offsets[block];
        var length = _offsets[block + 1] - start;
        var compressed = new byte[length];
        if (start + length > _file.Length)
        {
            throw BlockException.Io($"cloop: block {block} of '{FileName}' extends beyond the end of the file");
        }

        await _file.ReadAsync(start, compressed).ConfigureAwait(false);
        var output = _cached ?? new byte[_header.BlockSize];
        _cachedBlock = -1;
        if (!ZlibInflate.Exact(compressed, output))
        {
            throw BlockException.Io($"cloop: block {block} of '{FileName}' is not a zlib stream of {_header.BlockSize} bytes");
        }

        _cached = output;
        _cachedBlock = block;
        return output;
    }
}
