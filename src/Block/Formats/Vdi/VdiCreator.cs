using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vdi;

/// <summary>Writes new VDI images as QEMU's vdi_co_do_create: header, block map, and for a static image the data area (sparse).</summary>
internal static class VdiCreator
{
    public static async ValueTask CreateAsync(BlockNode file, VdiCreateOptions options)
    {
        if (options.Size > VdiFormat.MaxDiskSize)
        {
            throw new BlockException(Errno.ENOTSUP,
                $"Unsupported VDI image size (size is 0x{options.Size:x}, max supported is 0x{VdiFormat.MaxDiskSize:x})");
        }

        var blocks = (uint)((options.Size + VdiFormat.BlockSize - 1) / VdiFormat.BlockSize);
        var mapBytes = (((long)blocks * 4) + VdiFormat.SectorSize - 1) & ~(long)(VdiFormat.SectorSize - 1);
        var header = new VdiHeader
        {
            ImageType = options.Static ? VdiFormat.TypeStatic : VdiFormat.TypeDynamic,
            DataOffset = (uint)(VdiFormat.HeaderSize + mapBytes),
            DiskSize = (ulong)options.Size,
            BlocksInImage = blocks,
            BlocksAllocated = options.Static ? blocks : 0,
            ImageUuid = Guid.NewGuid(),
            LastSnapshotUuid = Guid.NewGuid(),
        };
        var image = new byte[VdiFormat.HeaderSize + mapBytes];
        header.Write(image);
        var map = image.AsSpan(VdiFormat.HeaderSize);
        for (var i = 0; i < blocks; i++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(map[(i * 4)..], options.Static ? (uint)i : VdiFormat.Unallocated);
        }

        if (file.Length != 0)
        {
            await file.TruncateAsync(0).ConfigureAwait(false);
        }

        var end = image.Length + (options.Static ? (long)blocks * VdiFormat.BlockSize : 0);
        await file.TruncateAsync(end).ConfigureAwait(false);
        await file.WriteAsync(0, image).ConfigureAwait(false);
        await file.FlushAsync().ConfigureAwait(false);
    }
}
