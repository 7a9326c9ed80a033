namespace ExportServer.Block.Formats.Luks;

/// <summary>LUKS1 constants (the on-disk format specification) and the layout QEMU gives the images it creates.</summary>
internal static class LuksFormat
{
    public static ReadOnlySpan<byte> Magic => [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe];

    public const int HeaderSize = 592;
    public const int SectorSize = 512;
    public const int SlotCount = 8;
    public const int DigestLength = 20;
    public const int SaltLength = 32;
    public const uint Stripes = 4000;
    public const uint SlotEnabled = 0x00ac71f3;
    public const uint SlotDisabled = 0x0000dead;

    /// <summary>Key material starts after 4 KiB of header; QEMU also rounds each slot's material to this.</summary>
    public const int KeySlotOffset = 4096;

    public const ulong MinSlotIterations = 1000;
    public const ulong MinDigestIterations = 1000;

    /// <summary>
    /// Sectors of one slot's key material as QEMU lays it out: the split key rounded to whole sectors,
    /// then to whole multiples of the 4 KiB header.
    /// </summary>
    public static uint SplitKeySectors(int keyBytes)
    {
        const uint headerSectors = KeySlotOffset / SectorSize;
        var sectors = (((uint)keyBytes * Stripes) + SectorSize - 1) / SectorSize;
        return (sectors + headerSectors - 1) / headerSectors * headerSectors;
    }
}
