namespace ExportServer.Block.Formats.Qcow2;

/// <summary>One entry of the bitmap directory: where its bitmap table is, its flags, granularity and name.</summary>
internal sealed record Qcow2BitmapEntry(long TableOffset, int TableSize, uint Flags, int GranularityBits, string Name)
{
    public bool InUse => (Flags & Qcow2BitmapDirectory.FlagInUse) != 0;

    /// <summary>The bitmap records writes (QEMU's "auto" flag: enabled).</summary>
    public bool Auto => (Flags & Qcow2BitmapDirectory.FlagAuto) != 0;

    public long Granularity => 1L << GranularityBits;
}
