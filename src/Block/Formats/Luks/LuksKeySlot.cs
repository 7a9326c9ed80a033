namespace ExportServer.Block.Formats.Luks;

/// <summary>One of the eight LUKS1 key slots: whether it holds a key, its PBKDF2 count and salt, where its split key lies.</summary>
internal sealed record LuksKeySlot(bool Active, uint Iterations, byte[] Salt, uint KeyOffsetSector, uint Stripes)
{
    public static LuksKeySlot Empty(uint keyOffsetSector) =>
        new(false, 0, new byte[LuksFormat.SaltLength], keyOffsetSector, LuksFormat.Stripes);
}
