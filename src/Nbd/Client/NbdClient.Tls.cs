using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using ExportServer.Block.Core;
using ExportServer.Nbd.Protocol;

namespace ExportServer.Nbd.Client;

/// <summary>STARTTLS from the client side: ask, shake hands, and carry the rest of the connection in the TLS session.</summary>
internal sealed partial class NbdClient
{
    /// <summary>The TLS session once started; sends and receives then go through it.</summary>
    private SslStream? _tls;

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

        var stream = new SslStream(new NetworkStream(_socket, ownsSocket: false), leaveInnerStreamOpen: false);
        try
        {
            await stream.AuthenticateAsClientAsync(tls.Credentials.ClientOptions(tls.HostName), ct).ConfigureAwait(false);
        }
        catch (AuthenticationException e)
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw BlockException.Io($"TLS handshake failed: {e.Message}", e);
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        // The server sends nothing after its ACK until our hello, so the plain reader holds nothing more.
        var plain = _reader;
        _reader = CreateReader(stream);
        _tls = stream;
        await plain.CompleteAsync().ConfigureAwait(false);
    }
}
