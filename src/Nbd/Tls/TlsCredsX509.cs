using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ExportServer.Nbd.Tls.OpenSsl;

namespace ExportServer.Nbd.Tls;

/// <summary>
/// <c>tls-creds-x509</c>: a CA bundle, this side's certificate and key, an optional CRL, loaded from
/// <c>dir</c> as QEMU names the files. Peers are checked against the CA only (the system's roots play
/// no part), and with <c>verify-peer</c> a server demands a client certificate. A server runs its sessions
/// through OpenSSL directly (<see cref="OpenSslStream"/>), which sends large replies in fewer, larger
/// writes than SslStream; a client uses SslStream.
/// </summary>
public sealed class TlsCredsX509 : TlsCredentials
{
    private readonly X509Certificate2Collection _trust;
    private readonly X509Context? _context;
    private readonly X509Certificate2Collection? _clientCertificates;
    private readonly X509Crl? _crl;

    internal TlsCredsX509(string id, TlsEndpoint endpoint, bool verifyPeer, X509Certificate2Collection trust, X509Certificate2Collection? own, X509Crl? crl)
        : base(id, endpoint)
    {
        VerifyPeer = verifyPeer;
        _trust = trust;
        _crl = crl;
        if (own is { Count: > 0 })
        {
            if (endpoint == TlsEndpoint.Server)
            {
                _context = X509Context.Create(own, verifyPeer);
            }
            else
            {
                _clientCertificates = [own[0]];
            }
        }
    }

    public bool VerifyPeer { get; }

    internal override async Task<TlsSession> AcceptAsync(Socket socket, CancellationToken ct)
    {
        var context = _context ?? throw new AuthenticationException("no server certificate");
        var tls = await OpenSslStream.AcceptAsync(socket, context, CheckClient, ct).ConfigureAwait(false);
        return new TlsSession(tls, tls.Protocol, tls.Cipher, tls.PeerIdentity);
    }

    internal override async Task<TlsSession> ConnectAsync(Socket socket, string? hostName, CancellationToken ct)
    {
        var tls = new SslStream(new NetworkStream(socket, ownsSocket: false), leaveInnerStreamOpen: false);
        try
        {
            await tls.AuthenticateAsClientAsync(ClientOptions(hostName), ct).ConfigureAwait(false);
            return new TlsSession(tls, tls.SslProtocol.ToString(), tls.NegotiatedCipherSuite.ToString(), null);
        }
        catch
        {
            await tls.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// A client's certificate, asked for only with verify-peer: it must be trusted, and its distinguished
    /// name is the identity authorization checks (as in QEMU, only when peers are verified).
    /// </summary>
    private string CheckClient(X509Certificate2 certificate) =>
        IsTrusted(certificate, SslPolicyErrors.None, checkName: false)
            ? X509Identity.DistinguishedName(certificate)
            : throw new AuthenticationException("The certificate is not trusted");

    private SslClientAuthenticationOptions ClientOptions(string? hostName) => new()
    {
        TargetHost = hostName ?? string.Empty,
        ClientCertificates = _clientCertificates,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        EnabledSslProtocols = SslProtocols.None,
        RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
            !VerifyPeer || (certificate is not null && IsTrusted(certificate, errors, checkName: hostName is not null)),
    };

    /// <summary>The peer's chain ends at one of our CA certificates, nothing in it is revoked, and (client side) the name matches.</summary>
    private bool IsTrusted(X509Certificate certificate, SslPolicyErrors errors, bool checkName)
    {
        if (checkName && (errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
        {
            return false;
        }

        using var peer = new X509Certificate2(certificate);
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(_trust);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        if (!chain.Build(peer))
        {
            return false;
        }

        if (_crl is null)
        {
            return true;
        }

        foreach (var element in chain.ChainElements)
        {
            if (_crl.IsRevoked(element.Certificate))
            {
                return false;
            }
        }

        return true;
    }
}
