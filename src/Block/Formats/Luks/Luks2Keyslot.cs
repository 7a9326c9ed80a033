namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// A LUKS2 key slot of type "luks2": the volume key split by the anti-forensic splitter
/// (<see cref="AfHash"/>, <see cref="Stripes"/>) and encrypted into its area of the key slots area with
/// <see cref="AreaEncryption"/> under a key of <see cref="AreaKeySize"/> bytes derived by <see cref="Kdf"/>.
/// </summary>
internal sealed record Luks2Keyslot(
    int Id, int KeySize, int Priority, Luks2Kdf Kdf, string AfHash, int Stripes, long AreaOffset, long AreaSize, string AreaEncryption, int AreaKeySize)
{
    /// <summary>The largest key the format's tools make is 512 bits; 512 bytes bounds what a damaged header may ask to read.</summary>
    public const int MaxKeySize = 512;

    /// <summary>cryptsetup's priorities: 0 is never tried for a passphrase, 2 before the others.</summary>
    public const int PriorityIgnore = 0;
    public const int PriorityNormal = 1;
    public const int PriorityHigh = 2;

    /// <summary>The split key rounded up to whole 512-byte sectors, as it lies in the area.</summary>
    public int MaterialLength => ((KeySize * Stripes) + LuksFormat.SectorSize - 1) / LuksFormat.SectorSize * LuksFormat.SectorSize;

    /// <summary>Reads a key slot of type "luks2" and checks that its area lies within the key slots area.</summary>
    public static Luks2Keyslot Read(int id, Luks2Json slot, long areaStart, long areaEnd)
    {
        var keySize = (int)slot.Number("key_size", 1, MaxKeySize);
        var priority = slot.Has("priority") ? (int)slot.Number("priority", PriorityIgnore, PriorityHigh) : PriorityNormal;
        var af = slot.Object("af");
        if (af.String("type") != "luks1")
        {
            throw Luks2Json.Corrupt($"{af.Path}.type", "is not luks1");
        }

        var stripes = (int)af.Number("stripes", LuksFormat.Stripes, LuksFormat.Stripes);
        var area = slot.Object("area");
        if (area.String("type") != "raw")
        {
            throw Luks2Json.Corrupt($"{area.Path}.type", "is not raw");
        }

        var keyslot = new Luks2Keyslot(
            id, keySize, priority, Luks2Kdf.Read(slot.Object("kdf")), af.String("hash"), stripes,
            area.Size("offset"), area.Size("size"), area.String("encryption"), (int)area.Number("key_size", 1, MaxKeySize));
        if (keyslot.AreaOffset < areaStart || keyslot.AreaSize > areaEnd - keyslot.AreaOffset)
        {
            throw Luks2Json.Corrupt(area.Path, $"[0x{keyslot.AreaOffset:x}, +0x{keyslot.AreaSize:x}) lies outside the key slots area [0x{areaStart:x}, 0x{areaEnd:x})");
        }

        if (keyslot.AreaSize < keyslot.MaterialLength)
        {
            throw Luks2Json.Corrupt(area.Path, $"size {keyslot.AreaSize} is smaller than the split key ({keyslot.MaterialLength} bytes)");
        }

        return keyslot;
    }
}
