namespace ExportServer.Block.Formats.Dmg;

/// <summary>One chunk of the disk: <see cref="SectorCount"/> sectors from <see cref="Sector"/>, stored as <see cref="Length"/> bytes at <see cref="Offset"/> of the file.</summary>
internal readonly record struct DmgChunk(DmgChunkType Type, long Sector, long SectorCount, long Offset, long Length)
{
    /// <summary>Zero and ignore chunks read as zeroes and store nothing.</summary>
    public bool IsZero => Type is DmgChunkType.Zero or DmgChunkType.Ignore;

    public string TypeName => Type switch
    {
        DmgChunkType.Zero => "zero",
        DmgChunkType.Raw => "raw",
        DmgChunkType.Ignore => "ignore",
        DmgChunkType.Adc => "ADC-compressed",
        DmgChunkType.Zlib => "zlib-compressed",
        DmgChunkType.Bzip2 => "bzip2-compressed",
        DmgChunkType.Lzfse => "lzfse-compressed",
        _ => $"of unknown type 0x{(uint)Type:x}",
    };
}
