using System.Collections;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vpc;

/// <summary>
/// A VHD image as a block node. A fixed disk is its file's first bytes; a dynamic disk maps each
/// block through the BAT, an unallocated block reading as zeroes. As QEMU, reads ignore the sector
/// bitmaps and writes keep every bitmap all ones (the whole block counts as written).
/// Crash safety of an allocating write: the footer moves to the new end of the file first, then the
/// block's bitmap and data are written and flushed, and only then the BAT entry points at them, so a
/// kill at any moment leaves an image whose footer ends the file and whose BAT points only at
/// written blocks (at worst space after the last block is unused).
/// </summary>
internal sealed partial class VpcNode : BlockNode, IImageInfoSource
{
    private readonly BlockNode _file;
    private readonly byte[] _footerBytes;
    private readonly VpcFooter _footer;
    private readonly VpcBlockTable? _table;
    private readonly long _blockSize;
    private readonly int _bitmapSize;
    private readonly SemaphoreSlim _allocation = new(1, 1);

    /// <summary>Blocks whose bitmap is known to be all ones (checked or written this session); set under <see cref="_allocation"/>.</summary>
    private readonly BitArray? _bitmapFull;

    /// <summary>Where the next block goes: the end of the last block (or of the table); the footer follows it.</summary>
    private long _nextBlock;

    private VpcNode(string nodeName, bool readOnly, BlockNode file, byte[] footerBytes, VpcFooter footer, long length,
        VpcDynamicHeader? dynamic, VpcBlockTable? table, long nextBlock)
        : base(nodeName, readOnly)
    {
        _file = file;
        _footerBytes = footerBytes;
        _footer = footer;
        _table = table;
        _nextBlock = nextBlock;
        Length = length;
        if (dynamic is not null)
        {
            _blockSize = dynamic.BlockSize;
            _bitmapSize = dynamic.BitmapSize;
            _bitmapFull = new BitArray(table!.Count);
        }

        Limits = new BlockLimits(OptimalTransfer: (int)Math.Min(_blockSize, 1 << 20));
        Capabilities = new BlockCapabilities(WriteZeroes: true, FastZero: file.CanFastZero && table is null);
        AttachChild("file", ChildRole.File, file, ChildUse.Metadata);
    }

    public override string DriverName => "vpc";

    private bool IsFixed => _table is null;

    /// <summary>QEMU's vpc_co_get_info: a dynamic disk's block is its cluster.</summary>
    public BlockDriverInfo? DriverInfo => new(IsFixed ? 0 : _blockSize, false);

    /// <summary>Reads and checks the footer, and for a dynamic disk its header and BAT (QEMU's vpc_open).</summary>
    public static async ValueTask<VpcNode> OpenAsync(string nodeName, bool readOnly, BlockNode file)
    {
        var fileLength = file.Length;
        if (fileLength < VpcFormat.FooterSize)
        {
            throw BlockException.Invalid("File too small for a VHD header");
        }

        var footerBytes = new byte[VpcFormat.FooterSize];
        await file.ReadAsync(0, footerBytes).ConfigureAwait(false);
        var dynamic = VpcFooter.HasCookie(footerBytes);
        if (!dynamic)
        {
            // A fixed disk has its footer only at the end.
            await file.ReadAsync(fileLength - VpcFormat.FooterSize, footerBytes).ConfigureAwait(false);
        }

        if (!VpcFooter.HasCookie(footerBytes))
        {
            throw BlockException.Invalid("invalid VPC image");
        }

        var footer = VpcFooter.Read(footerBytes);
        if (!dynamic && !footer.IsFixed)
        {
            throw BlockException.Invalid($"invalid VPC image (a footer at the end only, of disk type {footer.DiskType} rather than fixed)");
        }

        var sectors = footer.VirtualSectors;
        if (sectors > VpcFormat.MaxSectors)
        {
            throw new BlockException(Errno.EFBIG, $"vpc: virtual size {sectors * VpcFormat.SectorSize} is larger than the maximum of 2040 GiB");
        }

        var length = sectors * VpcFormat.SectorSize;
        if (!dynamic)
        {
            if (length > fileLength - VpcFormat.FooterSize)
            {
                throw BlockException.Invalid($"vpc: fixed image '{file.FileName}' holds {fileLength - VpcFormat.FooterSize} bytes of data, less than its virtual size {length}");
            }

            return new VpcNode(nodeName, readOnly, file, footerBytes, footer, length, null, null, 0);
        }

        var (header, table, next) = await ReadDynamicAsync(file, footer, sectors).ConfigureAwait(false);
        if (footer.DiskType == VpcFormat.DiskDifferencing)
        {
            // QEMU reads such a disk as a dynamic one without its parent, which returns zeroes
            // wherever the parent holds data; a clear refusal instead.
            throw BlockException.NotSupported($"vpc: differencing images are not supported (parent '{header.ParentName}')");
        }

        return new VpcNode(nodeName, readOnly, file, footerBytes, footer, length, header, table, next);
    }

    private static async ValueTask<(VpcDynamicHeader Header, VpcBlockTable Table, long Next)> ReadDynamicAsync(BlockNode file, VpcFooter footer, long sectors)
    {
        var fileLength = file.Length;
        if (footer.DataOffset > (ulong)(fileLength - VpcFormat.DynamicHeaderSize))
        {
            throw BlockException.Invalid($"vpc: dynamic disk header offset 0x{footer.DataOffset:x} (footer data offset) is beyond the end of the file");
        }

        var headerOffset = (long)footer.DataOffset;
        var headerBytes = new byte[VpcFormat.DynamicHeaderSize];
        await file.ReadAsync(headerOffset, headerBytes).ConfigureAwait(false);
        var header = VpcDynamicHeader.Read(headerBytes);

        long blockSize = header.BlockSize;
        if (sectors * VpcFormat.SectorSize / blockSize > uint.MaxValue)
        {
            throw BlockException.Invalid("Too many blocks");
        }

        if ((long)header.MaxTableEntries * blockSize < sectors * VpcFormat.SectorSize)
        {
            throw BlockException.Invalid("Page table too small");
        }

        if (header.MaxTableEntries > int.MaxValue / 4)
        {
            throw BlockException.Invalid($"Max Table Entries too large ({(int)header.MaxTableEntries})");
        }

        var tableBytes = (long)header.MaxTableEntries * 4;
        if (header.TableOffset > (ulong)fileLength || tableBytes > fileLength - (long)header.TableOffset)
        {
            throw BlockException.Invalid(
                $"vpc: block allocation table (table offset 0x{header.TableOffset:x}, {header.MaxTableEntries} max table entries) extends beyond the end of the file");
        }

        var raw = new byte[tableBytes];
        if (raw.Length > 0)
        {
            await file.ReadAsync((long)header.TableOffset, raw).ConfigureAwait(false);
        }

        var table = VpcBlockTable.Read(raw, (long)header.TableOffset);
        var next = table.Validate(header.BitmapSize, blockSize, fileLength,
        [
            (0, VpcFormat.FooterSize, "footer copy"),
            (headerOffset, VpcFormat.DynamicHeaderSize, "dynamic disk header"),
            (table.Offset, tableBytes, "block allocation table"),
        ]);
        return (header, table, next);
    }
}
