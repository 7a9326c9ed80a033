namespace ExportServer.Block.Formats.Qcow2;

/// <summary>One header extension as stored: its type and its data (without the padding to 8 bytes).</summary>
internal sealed record Qcow2HeaderExtension(uint Type, byte[] Data)
{
    /// <summary>Bytes the extension takes in the header cluster: type, length, data padded to 8.</summary>
    public int EncodedLength => 8 + ((Data.Length + 7) & ~7);
}
