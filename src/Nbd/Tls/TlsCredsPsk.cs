using System.Diagnostics;
using System.Net.Sockets;
using ExportServer.Block.Core;
using ExportServer.Nbd.Tls.OpenSsl;

namespace ExportServer.Nbd.Tls;

/// <summary>
/// <c>tls-creds-psk</c>: TLS with a pre-shared key instead of certificates, through OpenSSL (SslStream has
/// no PSK). A client sends its username and proves the key it read from <c>keys.psk</c> when the
/// credentials were made; a server looks the username up in <c>keys.psk</c> for each handshake, as
/// GnuTLS does for QEMU, and the username is the identity <c>tls-authz</c> rules match.
/// </summary>
public sealed class TlsCredsPsk : TlsCredentials
{
    private readonly PskContext _context;
    private readonly string _keysPath;
    private readonly string? _username;
    private readonly byte[]? _key;

    internal TlsCredsPsk(string id, TlsEndpoint endpoint, string keysPath, string? username, byte[]? key)
        : base(id, endpoint)
    {
        Debug.Assert(endpoint == TlsEndpoint.Server || (username is not null && key is not null), "a client has its username and key");
        _context = PskContext.Create(endpoint);
        _keysPath = keysPath;
        _username = username;
        _key = key;
    }

    internal override async Task<TlsSession> AcceptAsync(Socket socket, CancellationToken ct)
    {
        var tls = await OpenSslStream.AcceptAsync(socket, _context, ServerKey, ct).ConfigureAwait(false);
        return new TlsSession(tls, tls.Protocol, tls.Cipher, tls.PeerIdentity);
    }

    /// <summary>PSK proves both sides by the key alone: there is no name for <paramref name="hostName"/> to check.</summary>
    internal override async Task<TlsSession> ConnectAsync(Socket socket, string? hostName, CancellationToken ct)
    {
        var tls = await OpenSslStream.ConnectAsync(socket, _context, _username!, _key!, ct).ConfigureAwait(false);
        return new TlsSession(tls, tls.Protocol, tls.Cipher, null);
    }

    /// <summary>The key of a username a client sent; throws with the reason the client is refused.</summary>
    private byte[] ServerKey(string username)
    {
        var hex = PskKeyFile.FindHexKey(PskKeyFile.Read(_keysPath), username)
            ?? throw BlockException.Invalid($"Username {username} not found in PSK file {_keysPath}");
        return PskKeyFile.Decode(hex, out var error)
            ?? throw BlockException.Invalid($"The key of username {username} in PSK file {_keysPath}: {error}");
    }
}
