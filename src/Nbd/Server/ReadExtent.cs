namespace ExportServer.Nbd.Server;

/// <summary>A piece of a READ reply: data to send, or a range that reads as zeroes (an OFFSET_HOLE chunk).</summary>
internal struct ReadExtent(long offset, int length, bool zero)
{
    public long Offset = offset;
    public int Length = length;
    public bool Zero = zero;
}
