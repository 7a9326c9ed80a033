using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Secrets;

namespace ExportServer.Nbd.Tls;

/// <summary>
/// The <c>tls-creds-x509</c> object kind: reads <c>dir</c>'s files as QEMU names them (ca-cert.pem; the
/// server's or client's cert and key; ca-crl.pem and dh-params.pem when present) with QEMU's errors.
/// </summary>
public sealed class TlsCredsX509Type : IObjectType
{
    internal static readonly Dictionary<string, TlsEndpoint> Endpoints = new(StringComparer.Ordinal)
    {
        ["client"] = TlsEndpoint.Client,
        ["server"] = TlsEndpoint.Server,
    };

    public string QomType => "tls-creds-x509";

    public void Add(NamedObjects objects, string id, OptionReader options)
    {
        var common = TlsCommonOptions.Read(QomType, options);
        var passwordId = options.GetString("passwordid");
        var sanity = options.GetBool("sanity-check", true);
        options.EnsureAllConsumed();

        var password = passwordId is null ? null : Secrets.LookupUtf8(objects, passwordId);
        var server = common.Endpoint == TlsEndpoint.Server;
        var caPath = common.File("ca-cert.pem", required: true)!;
        var crlPath = server ? common.File("ca-crl.pem", required: false) : null;
        var certPath = common.File(server ? "server-cert.pem" : "client-cert.pem", required: server);
        var keyPath = common.File(server ? "server-key.pem" : "client-key.pem", required: server);
        var dhPath = server ? common.File("dh-params.pem", required: false) : null;

        var trust = LoadCertificates(caPath);
        var own = certPath is not null && keyPath is not null ? LoadOwn(certPath, keyPath, password) : null;
        var crl = crlPath is null ? null : LoadCrl(crlPath);
        if (dhPath is not null)
        {
            // Key exchange is (EC)DHE over named groups, which need no parameters; the file is
            // still read so that a broken one fails here as it does in QEMU.
            TlsCommonOptions.ReadFile(dhPath);
        }

        if (sanity && own is { Count: > 0 })
        {
            CheckValidity(own[0], certPath!);
        }

        objects.Add(id, new TlsCredsX509(id, common.Endpoint, common.VerifyPeer, trust, own, crl));
    }

    public bool TryDelete(NamedObjects objects, string id) => TlsCommonOptions.TryDelete<TlsCredsX509>(objects, id);

    private static X509Certificate2Collection LoadCertificates(string path)
    {
        var collection = new X509Certificate2Collection();
        try
        {
            collection.ImportFromPem(TlsCommonOptions.ReadFile(path));
        }
        catch (CryptographicException e)
        {
            throw BlockException.Invalid($"Unable to import CA certificate list {path}: {e.Message}");
        }

        if (collection.Count == 0)
        {
            throw BlockException.Invalid($"Unable to import CA certificate list {path}: no certificate found");
        }

        return collection;
    }

    /// <summary>This side's certificate (first in its file, any intermediates after it) with its private key.</summary>
    private static X509Certificate2Collection LoadOwn(string certPath, string keyPath, string? password)
    {
        var chain = new X509Certificate2Collection();
        try
        {
            var certPem = TlsCommonOptions.ReadFile(certPath);
            var keyPem = TlsCommonOptions.ReadFile(keyPath);
            var leaf = password is null
                ? X509Certificate2.CreateFromPem(certPem, keyPem)
                : X509Certificate2.CreateFromEncryptedPem(certPem, keyPem, password);
            chain.Add(leaf);
            var all = new X509Certificate2Collection();
            all.ImportFromPem(certPem);
            for (var i = 1; i < all.Count; i++)
            {
                chain.Add(all[i]);
            }
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            throw BlockException.Invalid($"Cannot load certificate '{certPath}' & key '{keyPath}': {e.Message}");
        }

        return chain;
    }

    private static X509Crl LoadCrl(string path)
    {
        try
        {
            return X509Crl.Parse(TlsCommonOptions.ReadFile(path));
        }
        catch (Exception e) when (e is CryptographicException or AsnContentException or FormatException)
        {
            throw BlockException.Invalid($"Cannot load CRL {path}: {e.Message}");
        }
    }

    private static void CheckValidity(X509Certificate2 certificate, string path)
    {
        var now = DateTime.Now;
        if (certificate.NotAfter < now)
        {
            throw BlockException.Invalid($"The certificate {path} has expired");
        }

        if (certificate.NotBefore > now)
        {
            throw BlockException.Invalid($"The certificate {path} is not yet active");
        }
    }
}
