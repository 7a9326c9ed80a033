using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ExportServer.Block.Core;

namespace ExportServer.Nbd.Tls.OpenSsl;

/// <summary>
/// An SSL_CTX for a server's x509 credentials, one per credentials object: TLS 1.2 and 1.3, the server's
/// certificate (with its intermediates) and key, and with verify-peer a demand for the client's
/// certificate, which <see cref="OpenSslStream.VerifyPeer"/> hands to the credentials' own check.
/// </summary>
internal sealed unsafe class X509Context : SafeHandle
{
    /// <summary>AES-GCM first, AES-128 before AES-256: where AES has hardware support it is the cheapest to encrypt.</summary>
    private const string Tls13Suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

    private X509Context()
        : base(0, ownsHandle: true)
    {
    }

    public override bool IsInvalid => handle == 0;

    /// <summary>The context for <paramref name="own"/> (the certificate with its key, then any intermediates).</summary>
    public static X509Context Create(X509Certificate2Collection own, bool verifyPeer)
    {
        var context = new X509Context();
        var ctx = LibSsl.CtxNew(LibSsl.TlsMethod());
        if (ctx == 0)
        {
            throw BlockException.Invalid($"Cannot allocate credentials: {LibSsl.DrainErrors() ?? "SSL_CTX_new failed"}");
        }

        context.SetHandle(ctx);
        try
        {
            LibSsl.CtxCtrl(ctx, LibSsl.CtrlSetMinProtoVersion, LibSsl.Tls12Version, 0);
            LibSsl.CtxSetOptions(ctx, LibSsl.OpIgnoreUnexpectedEof | LibSsl.OpNoRenegotiation | LibSsl.OpCipherServerPreference | LibSsl.OpNoTicket);
            if (LibSsl.CtxSetCiphersuites(ctx, Tls13Suites) != 1)
            {
                throw Failed("no TLS 1.3 cipher suite");
            }

            // (EC)DHE with the library's built-in groups; no session cache or tickets, which nothing resumes with.
            LibSsl.CtxCtrl(ctx, LibSsl.CtrlSetDhAuto, 1, 0);
            LibSsl.CtxCtrl(ctx, LibSsl.CtrlSetSessionCacheMode, 0, 0);
            LibSsl.CtxSetNumTickets(ctx, 0);
            UseCertificate(ctx, own);
            if (verifyPeer)
            {
                LibSsl.CtxSetVerify(ctx, LibSsl.VerifyPeerMode | LibSsl.VerifyFailIfNoPeerCert, 0);
                LibSsl.CtxSetCertVerifyCallback(ctx, &OpenSslStream.VerifyPeer, 0);
            }
        }
        catch
        {
            context.Dispose();
            throw;
        }

        return context;
    }

    private static void UseCertificate(nint ctx, X509Certificate2Collection own)
    {
        var leaf = own[0];
        fixed (byte* der = leaf.RawData)
        {
            if (LibSsl.CtxUseCertificateAsn1(ctx, leaf.RawData.Length, der) != 1)
            {
                throw Failed("the certificate is not usable");
            }
        }

        for (var i = 1; i < own.Count; i++)
        {
            var bytes = own[i].RawData;
            fixed (byte* der = bytes)
            {
                var at = der;
                var x509 = LibSsl.D2iX509(0, ref at, bytes.Length);
                if (x509 == 0)
                {
                    throw Failed("an intermediate certificate is not usable");
                }

                // set0: the context owns the certificate once it took it.
                if (LibSsl.CtxCtrl(ctx, LibSsl.CtrlChainCert, 0, x509) != 1)
                {
                    LibSsl.X509Free(x509);
                    throw Failed("an intermediate certificate is not usable");
                }
            }
        }

        var pkcs8 = ExportKey(leaf);
        try
        {
            fixed (byte* der = pkcs8)
            {
                var at = der;
                var key = LibSsl.D2iAutoPrivateKey(0, ref at, pkcs8.Length);
                if (key == 0)
                {
                    throw Failed("the private key is not usable");
                }

                var used = LibSsl.CtxUsePrivateKey(ctx, key);
                LibSsl.EvpPkeyFree(key);
                if (used != 1 || LibSsl.CtxCheckPrivateKey(ctx) != 1)
                {
                    throw Failed("the private key does not match the certificate");
                }
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(pkcs8);
        }
    }

    /// <summary>The certificate's private key as unencrypted PKCS#8, for OpenSSL to load.</summary>
    private static byte[] ExportKey(X509Certificate2 certificate)
    {
        using AsymmetricAlgorithm? key = (AsymmetricAlgorithm?)certificate.GetRSAPrivateKey()
            ?? (AsymmetricAlgorithm?)certificate.GetECDsaPrivateKey()
            ?? certificate.GetDSAPrivateKey();
        return key?.ExportPkcs8PrivateKey() ?? throw BlockException.Invalid("Cannot allocate credentials: the certificate's key type is not supported");
    }

    private static BlockException Failed(string what) =>
        BlockException.Invalid($"Cannot allocate credentials: {LibSsl.DrainErrors() ?? what}");

    protected override bool ReleaseHandle()
    {
        LibSsl.CtxFree(handle);
        return true;
    }
}
