namespace ExportServer.Block.Formats.Dmg;

/// <summary>The type of a chunk in a mish (blkx) table, as the UDIF format numbers them.</summary>
internal enum DmgChunkType : uint
{
    Zero = 0,
    Raw = 1,
    Ignore = 2,
    Adc = 0x80000004,
    Zlib = 0x80000005,
    Bzip2 = 0x80000006,
    Lzfse = 0x80000007,
    Comment = 0x7ffffffe,
    Last = 0xffffffff,
}
