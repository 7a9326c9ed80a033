using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ExportServer.Nbd.Tls;

/// <summary>
/// <c>tls-creds-x509</c>: a CA bundle, this side's certificate and key, an optional CRL, loaded from
/// <c>dir</c> as QEMU names the files. Peers are checked against the CA only (the system's roots play
/// no part), and with <c>verify-peer</c> a server demands a client certificate.
/// </summary>
public sealed class TlsCredsX509 : TlsCredentials
{
    private readonly X509Certificate2Collection _trust;
    private readonly SslStreamCertificateContext? _context;
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
            var intermediates = new X509Certificate2Collection();
            for (var i = 1; i < own.Count; i++)
            {
                intermediates.Add(own[i]);
            }

            if (endpoint == TlsEndpoint.Server)
            {
                _context = SslStreamCertificateContext.Create(own[0], intermediates, offline: true);
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
        var tls = new SslStream(new NetworkStream(socket, ownsSocket: false), leaveInnerStreamOpen: false);
        try
        {
            await tls.AuthenticateAsServerAsync(ServerOptions(), ct).ConfigureAwait(false);
            return new TlsSession(tls, tls.SslProtocol.ToString(), tls.NegotiatedCipherSuite.ToString(), PeerName(tls));
        }
        catch
        {
            await tls.DisposeAsync().ConfigureAwait(false);
            throw;
        }
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

    /// <summary>The client certificate's distinguished name when peers are verified (as in QEMU, the only case authorization checks).</summary>
    private string? PeerName(SslStream tls)
    {
        if (!VerifyPeer)
        {
            return null;
        }

        if (tls.RemoteCertificate is not { } remote)
        {
            throw new AuthenticationException("No certificate peer name");
        }

        using var certificate = new X509Certificate2(remote);
        return X509Identity.DistinguishedName(certificate);
    }

    private SslServerAuthenticationOptions ServerOptions() => new()
    {
        ServerCertificateContext = _context,
        ClientCertificateRequired = VerifyPeer,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        EnabledSslProtocols = SslProtocols.None,
        RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
            !VerifyPeer || (certificate is not null && IsTrusted(certificate, errors & ~SslPolicyErrors.RemoteCertificateChainErrors, checkName: false)),
    };

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
