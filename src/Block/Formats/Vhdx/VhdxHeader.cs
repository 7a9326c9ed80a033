using System.Buffers.Binary;

namespace ExportServer.Block.Formats.Vhdx;

/// <summary>
/// One of the two headers (4 KiB checksummed, at 64 KiB and 128 KiB): the sequence number that says
/// which is current, the write GUIDs, and the log (GUID, offset, length). <see cref="TryRead"/>
/// returns null for a header that is not valid (bad checksum, signature or version), as the
/// format allows one of the two to be.
/// </summary>
internal sealed record VhdxHeader
{
    private const int OffSignature = 0;
    private const int OffChecksum = 4;
    private const int OffSequence = 8;
    private const int OffFileWriteGuid = 16;
    private const int OffDataWriteGuid = 32;
    private const int OffLogGuid = 48;
    private const int OffLogVersion = 64;
    private const int OffVersion = 66;
    private const int OffLogLength = 68;
    private const int OffLogOffset = 72;

    public ulong Sequence { get; init; }

    public Guid FileWriteGuid { get; init; }

    public Guid DataWriteGuid { get; init; }

    /// <summary>Non-zero while the log may hold entries to replay.</summary>
    public Guid LogGuid { get; init; }

    public uint LogLength { get; init; }

    public ulong LogOffset { get; init; }

    public static VhdxHeader? TryRead(ReadOnlySpan<byte> block)
    {
        var h = block[..VhdxFormat.HeaderSize];
        if (BinaryPrimitives.ReadUInt32LittleEndian(h[OffChecksum..]) != VhdxFormat.Checksum(h, OffChecksum) ||
            BinaryPrimitives.ReadUInt32LittleEndian(h[OffSignature..]) != VhdxFormat.HeaderSignature ||
            BinaryPrimitives.ReadUInt16LittleEndian(h[OffVersion..]) != 1)
        {
            return null;
        }

        return new VhdxHeader
        {
            Sequence = BinaryPrimitives.ReadUInt64LittleEndian(h[OffSequence..]),
            FileWriteGuid = new Guid(h.Slice(OffFileWriteGuid, 16)),
            DataWriteGuid = new Guid(h.Slice(OffDataWriteGuid, 16)),
            LogGuid = new Guid(h.Slice(OffLogGuid, 16)),
            LogLength = BinaryPrimitives.ReadUInt32LittleEndian(h[OffLogLength..]),
            LogOffset = BinaryPrimitives.ReadUInt64LittleEndian(h[OffLogOffset..]),
        };
    }

    /// <summary>Encodes the header into a 4 KiB block (the rest zero) with its checksum.</summary>
    public void Write(Span<byte> block)
    {
        var h = block[..VhdxFormat.HeaderSize];
        h.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffSignature..], VhdxFormat.HeaderSignature);
        BinaryPrimitives.WriteUInt64LittleEndian(h[OffSequence..], Sequence);
        FileWriteGuid.TryWriteBytes(h.Slice(OffFileWriteGuid, 16));
        DataWriteGuid.TryWriteBytes(h.Slice(OffDataWriteGuid, 16));
        LogGuid.TryWriteBytes(h.Slice(OffLogGuid, 16));
        BinaryPrimitives.WriteUInt16LittleEndian(h[OffLogVersion..], 0);
        BinaryPrimitives.WriteUInt16LittleEndian(h[OffVersion..], 1);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffLogLength..], LogLength);
        BinaryPrimitives.WriteUInt64LittleEndian(h[OffLogOffset..], LogOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(h[OffChecksum..], VhdxFormat.Checksum(h, OffChecksum));
    }
}
