using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using ExportServer.Nbd.Authz;
using ExportServer.Nbd.Protocol;
using ExportServer.Nbd.Tls;

namespace ExportServer.Nbd.Server;

/// <summary>STARTTLS: the TLS handshake inside the option haggling, the peer's authorization, and the switch of the connection's stream.</summary>
internal sealed partial class NbdConnection
{
    private async Task StartTlsAsync(byte[] data, CancellationToken ct)
    {
        var creds = _server.Options.TlsCredentials;
        if (data.Length != 0)
        {
            await RefuseAsync(NbdConstants.OptStartTls, NbdConstants.RepErrInvalid, "option 'STARTTLS' has unexpected length", ct).ConfigureAwait(false);
            return;
        }

        if (creds is null)
        {
            await RefuseAsync(NbdConstants.OptStartTls, NbdConstants.RepErrPolicy, "TLS not configured", ct).ConfigureAwait(false);
            return;
        }

        if (_tls is not null)
        {
            await RefuseAsync(NbdConstants.OptStartTls, NbdConstants.RepErrInvalid, "TLS already enabled", ct).ConfigureAwait(false);
            return;
        }

        await ReplyAsync(NbdConstants.OptStartTls, NbdConstants.RepAck, [], ct).ConfigureAwait(false);
        var tls = new SslStream(new NetworkStream(_socket, ownsSocket: false), leaveInnerStreamOpen: false);
        try
        {
            await tls.AuthenticateAsServerAsync(creds.ServerOptions(), ct).ConfigureAwait(false);
            Authorize(tls, creds);
        }
        catch
        {
            await tls.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        // The client waits for the ACK before its TLS hello, so the plain reader holds nothing more.
        var plain = _reader;
        _reader = CreateReader(tls);
        _tls = tls;
        await plain.CompleteAsync().ConfigureAwait(false);
        NbdLog.TlsEstablished(_log, Id, tls.SslProtocol.ToString(), tls.NegotiatedCipherSuite.ToString());
    }

    /// <summary>With tls-authz, the client certificate's distinguished name must be allowed (checked, as in QEMU, only when peers are verified).</summary>
    private void Authorize(SslStream tls, TlsCredentials creds)
    {
        var authzId = _server.Options.TlsAuthz;
        if (authzId is null || creds is not TlsCredsX509 { VerifyPeer: true })
        {
            return;
        }

        if (tls.RemoteCertificate is not { } remote)
        {
            throw new NbdProtocolException("No certificate peer name");
        }

        using var certificate = new X509Certificate2(remote);
        var identity = X509Identity.DistinguishedName(certificate);
        if (!AuthzObjectTypes.IsAllowed(_server.Options.Objects!, authzId, identity, out var reason))
        {
            throw new NbdProtocolException(reason);
        }
    }
}
