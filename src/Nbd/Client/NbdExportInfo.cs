namespace ExportServer.Nbd.Client;

/// <summary>
/// What the handshake learned about the export: size and transmission flags, the block size constraints
/// (0 when the server sent none), the reply style negotiated and the id of the base:allocation context.
/// </summary>
internal sealed record NbdExportInfo(
    ulong Size,
    ushort Flags,
    uint MinimumBlock,
    uint PreferredBlock,
    uint MaximumBlock,
    bool StructuredReplies,
    bool ExtendedHeaders,
    uint? BaseAllocationId)
{
    public bool Has(ushort flag) => (Flags & flag) == flag;
}
