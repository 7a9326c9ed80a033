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
        var session = await creds.AcceptAsync(_socket, ct).ConfigureAwait(false);
        try
        {
            Authorize(session);
        }
        catch
        {
            await session.Stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        // The client waits for the ACK before its TLS hello, so the plain reader holds nothing more.
        var plain = _reader;
        _reader = CreateReader(session.Stream);
        _receiveStream = null;
        _tls = session.Stream;
        await plain.CompleteAsync().ConfigureAwait(false);
        NbdLog.TlsEstablished(_log, Id, session.Protocol, session.Cipher);
    }

    /// <summary>
    /// With tls-authz, the identity the client proved must be allowed: a certificate's distinguished name
    /// (checked, as in QEMU, only when peers are verified) or a PSK username (which QEMU does not check).
    /// </summary>
    private void Authorize(TlsSession session)
    {
        var authzId = _server.Options.TlsAuthz;
        if (authzId is null || session.PeerIdentity is not { } identity)
        {
            return;
        }

        if (!AuthzObjectTypes.IsAllowed(_server.Options.Objects!, authzId, identity, out var reason))
        {
            throw new NbdProtocolException(reason);
        }
    }
}
