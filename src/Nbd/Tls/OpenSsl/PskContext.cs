using System.Runtime.InteropServices;
using ExportServer.Block.Core;

namespace ExportServer.Nbd.Tls.OpenSsl;

/// <summary>
/// An SSL_CTX for TLS-PSK, one per credentials object: TLS 1.2 and 1.3, the TLS 1.2 suites whose key
/// exchange is PSK alone or PSK with (EC)DHE (those GnuTLS peers such as QEMU and libnbd offer), and
/// TLS 1.3 with an external PSK bound to SHA-256, as GnuTLS binds it. No certificates are involved.
/// Each SSL object holds a reference to its context, so connections outlive a released handle.
/// </summary>
internal sealed unsafe class PskContext : SafeHandle
{
    /// <summary>TLS 1.2 key exchanges with forward secrecy first, AEAD ciphers first within them, plain PSK last; never RSA-PSK (it needs a certificate).</summary>
    private const string Tls12Suites = "kECDHEPSK+CHACHA20:kDHEPSK+AESGCM:kECDHEPSK:kDHEPSK:kPSK";

    /// <summary>
    /// The TLS 1.3 suites whose hash is SHA-256, the one an external PSK is bound to here, AES-GCM first
    /// (GnuTLS clients put ChaCha20 first, which is slower where AES has hardware support).
    /// </summary>
    private const string Tls13Suites = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";

    private PskContext()
        : base(0, ownsHandle: true)
    {
    }

    public override bool IsInvalid => handle == 0;

    public static PskContext Create(TlsEndpoint endpoint)
    {
        var context = new PskContext();
        var ctx = LibSsl.CtxNew(LibSsl.TlsMethod());
        if (ctx == 0)
        {
            throw BlockException.Invalid($"Cannot allocate credentials: {LibSsl.DrainErrors() ?? "SSL_CTX_new failed"}");
        }

        context.SetHandle(ctx);
        LibSsl.CtxCtrl(ctx, LibSsl.CtrlSetMinProtoVersion, LibSsl.Tls12Version, 0);
        LibSsl.CtxSetOptions(ctx, LibSsl.OpIgnoreUnexpectedEof | LibSsl.OpNoRenegotiation | LibSsl.OpCipherServerPreference);
        if (LibSsl.CtxSetCipherList(ctx, Tls12Suites) != 1 || LibSsl.CtxSetCiphersuites(ctx, Tls13Suites) != 1)
        {
            context.Dispose();
            throw BlockException.Invalid($"Cannot allocate credentials: {LibSsl.DrainErrors() ?? "no PSK cipher suite"}");
        }

        if (endpoint == TlsEndpoint.Server)
        {
            // DHE-PSK with the library's built-in groups; no session tickets, which nothing resumes with.
            LibSsl.CtxCtrl(ctx, LibSsl.CtrlSetDhAuto, 1, 0);
            LibSsl.CtxSetNumTickets(ctx, 0);
            LibSsl.CtxSetPskServerCallback(ctx, &OpenSslStream.ServerKey);
        }
        else
        {
            LibSsl.CtxSetPskClientCallback(ctx, &OpenSslStream.ClientKey);
        }

        return context;
    }

    protected override bool ReleaseHandle()
    {
        LibSsl.CtxFree(handle);
        return true;
    }
}
