namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// A LUKS2 data segment: where the encrypted data starts, its length (null: "dynamic", to the end of
/// the device), the cipher, the encryption sector size, the IV offset (in 512-byte sectors) and
/// whether it carries integrity tags.
/// </summary>
internal sealed record Luks2Segment(int Id, string Type, long Offset, long? Size, long IvTweak, string Encryption, int SectorSize, bool Integrity)
{
    /// <summary>Reads a segment; the encryption fields only when it is of type "crypt".</summary>
    public static Luks2Segment Read(int id, Luks2Json segment)
    {
        var type = segment.String("type");
        var offset = segment.Size("offset");
        long? size = segment.String("size") == "dynamic" ? null : segment.Size("size");
        if (type != "crypt")
        {
            return new Luks2Segment(id, type, offset, size, 0, string.Empty, LuksFormat.SectorSize, false);
        }

        var sectorSize = (int)segment.Number("sector_size", LuksFormat.SectorSize, 4096);
        if ((sectorSize & (sectorSize - 1)) != 0)
        {
            throw Luks2Json.Corrupt($"{segment.Path}.sector_size", $"{sectorSize} is not a power of two");
        }

        if (offset % LuksFormat.SectorSize != 0 || size % sectorSize is not (null or 0))
        {
            throw Luks2Json.Corrupt(segment.Path, $"offset {offset} or size {size} is not aligned to its sectors");
        }

        return new Luks2Segment(
            id, type, offset, size, segment.Size("iv_tweak"), segment.String("encryption"), sectorSize, segment.Has("integrity"));
    }
}
