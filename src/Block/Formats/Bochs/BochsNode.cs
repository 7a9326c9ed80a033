using System.Buffers;
using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Bochs;

/// <summary>
/// A Bochs growing redolog image, read-only: the disk is cut into extents; the catalog gives each
/// extent's slot in the file (or none), and each slot is a bitmap (one bit per 512-byte sector)
/// followed by the extent's sectors. A sector whose extent has no slot or whose bit is clear reads
/// as zeroes (QEMU's seek_to_sector).
/// </summary>
internal sealed class BochsNode : BlockNode
{
    private const int Sector = 512;

    private readonly BlockNode _file;
    private readonly BochsHeader _header;
    private readonly uint[] _catalog;
    private readonly long _dataOffset;

    private BochsNode(string nodeName, BlockNode file, BochsHeader header, uint[] catalog)
        : base(nodeName, readOnly: true)
    {
        _file = file;
        _header = header;
        _catalog = catalog;
        _dataOffset = header.HeaderSize + ((long)catalog.Length * 4);
        Length = (long)header.DiskSize;
        AttachChild("file", ChildRole.File, file, ChildUse.Metadata);
    }

    public override string DriverName => "bochs";

    public static async ValueTask<BochsNode> OpenAsync(string nodeName, BlockNode file)
    {
        var head = new byte[BochsHeader.Length];
        await file.ReadAsync(0, head.AsMemory(0, (int)Math.Min(file.Length, head.Length))).ConfigureAwait(false);
        var header = BochsHeader.Read(head);
        var raw = new byte[header.CatalogEntries * 4L];
        if (header.HeaderSize + (long)raw.Length > file.Length)
        {
            throw BlockException.Io($"bochs: the catalog ({header.CatalogEntries} entries at {header.HeaderSize}) extends beyond the end of '{file.FileName}'");
        }

        await file.ReadAsync(header.HeaderSize, raw).ConfigureAwait(false);
        var catalog = new uint[header.CatalogEntries];
        for (var i = 0; i < catalog.Length; i++)
        {
            catalog[i] = BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan(i * 4));
        }

        header.Validate();
        return new BochsNode(nodeName, file, header, catalog);
    }

    /// <summary>Never reached: the node is read-only and the common path refuses writes first.</summary>
    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags) => ReadOnlyFormat.RefuseWrite();

    /// <summary>Reads extent by extent: the bitmap bytes of the range once, then each run of sectors present in one request.</summary>
    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        while (buffer.Length > 0)
        {
            var extent = offset / _header.ExtentSize;
            var first = (int)(offset % _header.ExtentSize / Sector);
            var n = (int)Math.Min(buffer.Length, _header.ExtentSize - (offset % _header.ExtentSize));
            var part = buffer[..n];
            var slot = _catalog[extent];
            if (slot == BochsHeader.Unallocated)
            {
                part.Span.Clear();
            }
            else
            {
                await ReadExtentAsync(slot, first, (int)(offset % Sector), part).ConfigureAwait(false);
            }

            offset += n;
            buffer = buffer[n..];
        }
    }

    private async ValueTask ReadExtentAsync(uint slot, int firstSector, int inSector, Memory<byte> buffer)
    {
        var slotOffset = _dataOffset + (Sector * (long)slot * (_header.ExtentSectors + _header.BitmapSectors));
        var sectors = (inSector + buffer.Length + Sector - 1) / Sector;
        var bitmapBytes = ((firstSector + sectors - 1) / 8) - (firstSector / 8) + 1;
        var bitmap = ArrayPool<byte>.Shared.Rent(bitmapBytes);
        try
        {
            await _file.ReadAsync(slotOffset + (firstSector / 8), bitmap.AsMemory(0, bitmapBytes)).ConfigureAwait(false);
            bool Present(int sector) => ((bitmap[(sector / 8) - (firstSector / 8)] >> (sector % 8)) & 1) != 0;
            var done = 0;
            var sector = firstSector;
            while (done < buffer.Length)
            {
                var present = Present(sector);
                var run = Math.Min(buffer.Length - done, Sector - (done == 0 ? inSector : 0));
                var next = sector + 1;
                while (done + run < buffer.Length && Present(next) == present)
                {
                    run += Math.Min(buffer.Length - done - run, Sector);
                    next++;
                }

                var part = buffer.Slice(done, run);
                if (present)
                {
                    var host = slotOffset + (Sector * (_header.BitmapSectors + sector)) + (done == 0 ? inSector : 0);
                    await _file.ReadAsync(host, part).ConfigureAwait(false);
                }
                else
                {
                    part.Span.Clear();
                }

                done += run;
                sector = next;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bitmap);
        }
    }
}
