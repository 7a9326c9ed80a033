using System.Buffers.Binary;
using System.Text;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Dmg;

/// <summary>
/// The chunk table of a dmg, from its mish (blkx) blocks: in the resource fork, or base64 in the
/// &lt;data&gt; elements of the XML property list. Comment and last-entry rows are dropped; every other
/// row is kept, so that a read of a chunk type we cannot decode names it. Sizes are bounded as QEMU
/// bounds them (64 MiB per chunk that must be decoded, 16 MiB of XML), and the number of chunks too.
/// </summary>
internal sealed class DmgTable
{
    /// <summary>QEMU's DMG_LENGTHS_MAX: no chunk stores more, none that must be decoded holds more.</summary>
    public const long MaxChunkBytes = 64 * 1024 * 1024;

    public const long MaxXmlBytes = 16 * 1024 * 1024;

    /// <summary>More chunks than this (40 bytes each on disk) is a hostile table, not an image.</summary>
    public const int MaxChunks = 1 << 22;

    private const uint MishMagic = 0x6d697368;
    private const int MishHeaderSize = 204;
    private const int MishMinSize = 244;
    private const int OffFirstSector = 8;
    private const int OffDataOffset = 0x18;
    private const int RowSize = 40;

    private readonly List<DmgChunk> _chunks = [];
    private readonly ulong _dataFork;
    private readonly string _fileName;

    public DmgTable(ulong dataFork, string fileName)
    {
        _dataFork = dataFork;
        _fileName = fileName;
    }

    /// <summary>The chunks ordered by first sector.</summary>
    public DmgChunk[] Sorted() => [.. _chunks.OrderBy(c => c.Sector)];

    /// <summary>Reads the resource fork at <paramref name="begin"/> (QEMU's dmg_read_resource_fork): a data offset and length, then resources, each its length and a mish block.</summary>
    public async ValueTask ReadResourceForkAsync(BlockNode file, long begin, long length)
    {
        var head = new byte[12];
        await ReadAsync(file, begin, head).ConfigureAwait(false);
        var dataOffset = BinaryPrimitives.ReadUInt32BigEndian(head);
        var count = BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(8));
        if (dataOffset > length || count == 0 || dataOffset + (long)count > length)
        {
            throw Invalid($"resource data (offset {dataOffset}, length {count}) does not fit the resource fork of {length} bytes");
        }

        var offset = begin + dataOffset;
        var end = offset + count;
        var size = new byte[4];
        while (offset < end)
        {
            await ReadAsync(file, offset, size).ConfigureAwait(false);
            var n = BinaryPrimitives.ReadUInt32BigEndian(size);
            if (n == 0 || n > end - offset)
            {
                throw Invalid($"resource at 0x{offset:x} has length {n}, beyond the resource data");
            }

            offset += 4;
            var block = new byte[n];
            await ReadAsync(file, offset, block).ConfigureAwait(false);
            AddMishBlock(block);
            offset += n;
        }
    }

    /// <summary>Reads the XML property list (QEMU's dmg_read_plist_xml): each &lt;data&gt; element is a base64 mish block.</summary>
    public async ValueTask ReadPropertyListAsync(BlockNode file, long begin, long length)
    {
        if (length == 0 || length > MaxXmlBytes)
        {
            throw Invalid($"property list of {length} bytes (at most {MaxXmlBytes})");
        }

        var xml = new byte[length];
        await ReadAsync(file, begin, xml).ConfigureAwait(false);
        var text = Encoding.Latin1.GetString(xml);
        var at = 0;
        while ((at = text.IndexOf("<data>", at, StringComparison.Ordinal)) >= 0)
        {
            at += "<data>".Length;
            var end = text.IndexOf("</data>", at, StringComparison.Ordinal);
            if (end < 0)
            {
                throw Invalid("property list has a <data> element without its end");
            }

            byte[] block;
            try
            {
                block = Convert.FromBase64String(text[at..end]);
            }
            catch (FormatException)
            {
                throw Invalid($"property list has a <data> element at {at} that is not base64");
            }

            AddMishBlock(block);
            at = end;
        }
    }

    /// <summary>
    /// The rows of one mish block (QEMU's dmg_read_mish_block): what is not one (another magic, too
    /// short) is skipped; sectors are relative to the block's first sector, offsets to its data
    /// offset in the data fork.
    /// </summary>
    private void AddMishBlock(ReadOnlySpan<byte> block)
    {
        if (block.Length < MishMinSize || BinaryPrimitives.ReadUInt32BigEndian(block) != MishMagic)
        {
            return;
        }

        var firstSector = BinaryPrimitives.ReadUInt64BigEndian(block[OffFirstSector..]);
        var dataOffset = _dataFork + BinaryPrimitives.ReadUInt64BigEndian(block[OffDataOffset..]);
        for (var at = MishHeaderSize; at + RowSize <= block.Length; at += RowSize)
        {
            var row = block.Slice(at, RowSize);
            var type = (DmgChunkType)BinaryPrimitives.ReadUInt32BigEndian(row);
            if (type is DmgChunkType.Comment or DmgChunkType.Last)
            {
                continue;
            }

            var index = _chunks.Count;
            var sector = firstSector + BinaryPrimitives.ReadUInt64BigEndian(row[8..]);
            var sectors = BinaryPrimitives.ReadUInt64BigEndian(row[0x10..]);
            var offset = dataOffset + BinaryPrimitives.ReadUInt64BigEndian(row[0x18..]);
            var length = BinaryPrimitives.ReadUInt64BigEndian(row[0x20..]);
            var zero = type is DmgChunkType.Zero or DmgChunkType.Ignore;
            if (!zero && sectors > MaxChunkBytes / 512)
            {
                throw Invalid($"sector count {sectors} for chunk {index} is larger than max ({MaxChunkBytes / 512})");
            }

            if (length > MaxChunkBytes)
            {
                throw Invalid($"length {length} for chunk {index} is larger than max ({MaxChunkBytes})");
            }

            if (sector > long.MaxValue / 512 || sectors > long.MaxValue / 512 || sector + sectors > long.MaxValue / 512 || offset > long.MaxValue / 2)
            {
                throw Invalid($"chunk {index} (sector {sector}, {sectors} sectors, offset 0x{offset:x}) lies beyond any disk");
            }

            if (_chunks.Count >= MaxChunks)
            {
                throw Invalid($"more than {MaxChunks} chunks");
            }

            _chunks.Add(new DmgChunk(type, (long)sector, (long)sectors, (long)offset, (long)length));
        }
    }

    private async ValueTask ReadAsync(BlockNode file, long offset, Memory<byte> buffer)
    {
        if (offset < 0 || offset + buffer.Length > file.Length)
        {
            throw Invalid($"table at 0x{offset:x} ({buffer.Length} bytes) lies beyond the end of the file");
        }

        await file.ReadAsync(offset, buffer).ConfigureAwait(false);
    }

    private BlockException Invalid(string what) => BlockException.Invalid($"dmg: invalid chunk table in '{_fileName}': {what}");
}
