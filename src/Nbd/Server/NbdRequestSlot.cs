using ExportServer.Block.Core;
using ExportServer.Nbd.Protocol;

namespace ExportServer.Nbd.Server;

/// <summary>
/// One of a connection's fixed set of in-flight request slots, reused for every request so the hot
/// path allocates nothing per request: it carries the request and its WRITE payload to the worker, then
/// the finished reply bytes to the writer, which returns the slot to the connection after sending.
/// </summary>
internal sealed class NbdRequestSlot(NbdConnection connection)
{
    public NbdRequest Request;

    /// <summary>Pooled WRITE payload (first <see cref="PayloadLength"/> bytes), owned by the worker.</summary>
    public byte[]? Payload;

    public int PayloadLength;

    /// <summary>Pooled reply bytes (first <see cref="ReplyLength"/> bytes), owned by the writer once queued.</summary>
    public byte[]? Reply;

    public int ReplyLength;

    /// <summary>
    /// Data of a READ reply that follows <see cref="Reply"/> straight from a file (see
    /// <see cref="FileExtent"/>); no handle when the reply is all in <see cref="Reply"/>.
    /// </summary>
    public FileExtent Extent;

    /// <summary>Data bytes this request holds of the server's <see cref="NbdByteBudget"/>, given back when the slot is.</summary>
    public long Budgeted;

    public void Execute() => _ = connection.ProcessAsync(this);
}
