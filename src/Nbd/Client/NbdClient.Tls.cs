using System.Security.Authentication;
using ExportServer.Block.Core;
using ExportServer.Nbd.Protocol;
using ExportServer.Nbd.Tls;

namespace ExportServer.Nbd.Client;

/// <summary>STARTTLS from the client side: ask, shake hands, and carry the rest of the connection in the TLS session.</summary>
internal sealed partial class NbdClient
{
    /// <summary>The TLS session once started; sends and receives then go through it.</summary>
    private Stream? _tls;

    private async Task StartTlsAsync(NbdClientTls tls, bool fixedNewstyle, CancellationToken ct)
    {
        if (!fixedNewstyle)
        {
            throw BlockException.Io("Server does not support STARTTLS");
        }

        await SendOptionAsync(NbdConstants.OptStartTls, [], ct).ConfigureAwait(false);
        var (header, data) = await ReadOptionReplyAsync(NbdConstants.OptStartTls, ct).ConfigureAwait(false);
        if (header.Type != NbdConstants.RepAck)
        {
            var reason = data.Length > 0 ? System.Text.Encoding.UTF8.GetString(data) : NbdConstants.ReplyName(header.Type);
            throw BlockException.Io($"Server rejected request to start TLS: {reason}");
        }

        TlsSession session;
        try
        {
            session = await tls.Credentials.ConnectAsync(_socket, tls.HostName, ct).ConfigureAwait(false);
        }
        catch (AuthenticationException e)
        {
            throw BlockException.Io($"TLS handshake failed: {e.Message}", e);
        }

        // The server sends nothing after its ACK until our hello, so the plain reader holds nothing more.
        var plain = _reader;
        _reader = CreateReader(session.Stream);
        _tls = session.Stream;
        await plain.CompleteAsync().ConfigureAwait(false);
    }
}
