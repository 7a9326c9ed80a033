namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// Where the encrypted data of a LUKS image lies: from <see cref="Offset"/> to the end of the file, or
/// <see cref="FixedLength"/> bytes (a LUKS2 segment of fixed size); a LUKS2 node's length is whole
/// encryption sectors (<see cref="LengthUnit"/>), as dm-crypt maps it.
/// </summary>
internal sealed record LuksPayload(long Offset, long? FixedLength, int LengthUnit)
{
    public long LengthIn(long fileLength) => FixedLength ?? (Math.Max(0, fileLength - Offset) / LengthUnit * LengthUnit);
}
