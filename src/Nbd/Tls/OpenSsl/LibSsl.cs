using System.Runtime.InteropServices;

namespace ExportServer.Nbd.Tls.OpenSsl;

/// <summary>
/// The part of OpenSSL 3 (Debian libssl3: libssl.so.3, libcrypto.so.3) that the server's TLS needs: contexts
/// with PSK callbacks (which .NET's SslStream does not offer) or a certificate and a peer check, SSL objects
/// reading from a memory BIO and writing through a BIO method of ours, and the error queue.
/// OpenSSL's error queue is per thread, so a failing call's errors are read on the thread that made it.
/// </summary>
internal static unsafe partial class LibSsl
{
    private const string Ssl = "libssl.so.3";
    private const string Crypto = "libcrypto.so.3";

    public const int ErrorNone = 0;
    public const int ErrorSsl = 1;
    public const int ErrorWantRead = 2;
    public const int ErrorWantWrite = 3;
    public const int ErrorSyscall = 5;
    public const int ErrorZeroReturn = 6;

    public const int CtrlSetSessionCacheMode = 44;
    public const int CtrlChainCert = 89;
    public const int CtrlSetDhAuto = 118;
    public const int CtrlSetMinProtoVersion = 123;
    public const int Tls12Version = 0x0303;

    /// <summary>SSL_OP_IGNORE_UNEXPECTED_EOF: a peer that closes without close_notify ends the stream instead of failing it.</summary>
    public const ulong OpIgnoreUnexpectedEof = 1UL << 7;

    /// <summary>SSL_OP_NO_RENEGOTIATION: a TLS 1.2 session is never renegotiated under the NBD stream.</summary>
    public const ulong OpNoRenegotiation = 1UL << 30;

    /// <summary>SSL_OP_CIPHER_SERVER_PREFERENCE: a server picks the suite by its own order, not the client's.</summary>
    public const ulong OpCipherServerPreference = 1UL << 22;

    /// <summary>SSL_OP_NO_TICKET: no TLS 1.2 session tickets, which nothing resumes with.</summary>
    public const ulong OpNoTicket = 1UL << 14;

    /// <summary>SSL_VERIFY_PEER and SSL_VERIFY_FAIL_IF_NO_PEER_CERT: a server asks for the client's certificate and demands one.</summary>
    public const int VerifyPeerMode = 0x01;
    public const int VerifyFailIfNoPeerCert = 0x02;

    /// <summary>X509_V_ERR_CERT_REJECTED: the verdict of a certificate our own check refused (a bad_certificate alert).</summary>
    public const int X509ErrorCertRejected = 28;

    /// <summary>PSK_MAX_IDENTITY_LEN and PSK_MAX_PSK_LEN of OpenSSL 3.</summary>
    public const int MaxIdentityLength = 256;
    public const int MaxKeyLength = 512;

    [LibraryImport(Ssl, EntryPoint = "TLS_method")]
    public static partial nint TlsMethod();

    [LibraryImport(Ssl, EntryPoint = "SSL_CTX_new")]
    public static partial nint CtxNew(nint method);

    [LibraryImport(Ssl, EntryPoint = "SSL_CTX_free")]
    public static partial void CtxFree(nint ctx);

    [LibraryImport(Ssl, EntryPoint = "SSL_CTX_ctrl")]
    public static partial long CtxCtrl(nint ctx, int cmd, long larg, nint parg);

    [LibraryImport(Ssl, EntryPoint = "SSL_CTX_set_options")]
    public static partial ulong CtxSetOptions(nint ctx, ulong options);

    [LibraryImport(Ssl, EntryPoint = "SSL_CTX_set_cipher_list", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int CtxSetCipherList(nint ctx, string ciphers);

    [LibraryImport(Ssl, EntryPoint = "SSL_CTX_set_ciphersuites", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int CtxSetCiphersuites(nint ctx, string suites);

    [LibraryImport(Ssl, EntryPoint = "SSL_CTX_set_num_tickets")]
    public static partial int CtxSetNumTickets(nint ctx, nuint count);

    /// <summary>callback(ssl, identity, psk, max_psk_len) → the key's length, 0 for an unknown identity.</summary>
    [LibraryImport(Ssl, EntryPoint = "SSL_CTX_set_psk_server_callback")]
    public static partial void CtxSetPskServerCallback(nint ctx, delegate* unmanaged<nint, byte*, byte*, uint, uint> callback);

    /// <summary>callback(ssl, hint, identity, max_identity_len, psk, max_psk_len) → the key's length, 0 to give up.</summary>
    [LibraryImport(Ssl, EntryPoint = "SSL_CTX_set_psk_client_callback")]
    public static partial void CtxSetPskClientCallback(nint ctx, delegate* unmanaged<nint, byte*, byte*, uint, byte*, uint, uint> callback);

    [LibraryImport(Ssl, EntryPoint = "SSL_CTX_use_certificate_ASN1")]
    public static partial int CtxUseCertificateAsn1(nint ctx, int length, byte* der);

    [LibraryImport(Ssl, EntryPoint = "SSL_CTX_use_PrivateKey")]
    public static partial int CtxUsePrivateKey(nint ctx, nint key);

    [LibraryImport(Ssl, EntryPoint = "SSL_CTX_check_private_key")]
    public static partial int CtxCheckPrivateKey(nint ctx);

    [LibraryImport(Ssl, EntryPoint = "SSL_CTX_set_verify")]
    public static partial void CtxSetVerify(nint ctx, int mode, nint callback);

    /// <summary>callback(store_ctx, arg) → 1 to accept the peer's certificate, 0 to refuse it; replaces OpenSSL's own chain check.</summary>
    [LibraryImport(Ssl, EntryPoint = "SSL_CTX_set_cert_verify_callback")]
    public static partial void CtxSetCertVerifyCallback(nint ctx, delegate* unmanaged<nint, nint, int> callback, nint arg);

    [LibraryImport(Ssl, EntryPoint = "SSL_get_ex_data_X509_STORE_CTX_idx")]
    public static partial int SslGetExDataX509StoreCtxIdx();

    [LibraryImport(Ssl, EntryPoint = "SSL_new")]
    public static partial nint SslNew(nint ctx);

    [LibraryImport(Ssl, EntryPoint = "SSL_free")]
    public static partial void SslFree(nint ssl);

    [LibraryImport(Ssl, EntryPoint = "SSL_set_ex_data")]
    public static partial int SslSetExData(nint ssl, int index, nint data);

    [LibraryImport(Ssl, EntryPoint = "SSL_get_ex_data")]
    public static partial nint SslGetExData(nint ssl, int index);

    /// <summary>Hands both BIOs to the SSL object, which frees them with itself.</summary>
    [LibraryImport(Ssl, EntryPoint = "SSL_set_bio")]
    public static partial void SslSetBio(nint ssl, nint readBio, nint writeBio);

    [LibraryImport(Ssl, EntryPoint = "SSL_set_accept_state")]
    public static partial void SslSetAcceptState(nint ssl);

    [LibraryImport(Ssl, EntryPoint = "SSL_set_connect_state")]
    public static partial void SslSetConnectState(nint ssl);

    [LibraryImport(Ssl, EntryPoint = "SSL_do_handshake")]
    public static partial int SslDoHandshake(nint ssl);

    [LibraryImport(Ssl, EntryPoint = "SSL_read_ex")]
    public static partial int SslReadEx(nint ssl, byte* buffer, nuint count, out nuint read);

    [LibraryImport(Ssl, EntryPoint = "SSL_write_ex")]
    public static partial int SslWriteEx(nint ssl, byte* buffer, nuint count, out nuint written);

    [LibraryImport(Ssl, EntryPoint = "SSL_get_error")]
    public static partial int SslGetError(nint ssl, int result);

    [LibraryImport(Ssl, EntryPoint = "SSL_get_version")]
    public static partial nint SslGetVersion(nint ssl);

    [LibraryImport(Ssl, EntryPoint = "SSL_get_current_cipher")]
    public static partial nint SslGetCurrentCipher(nint ssl);

    [LibraryImport(Ssl, EntryPoint = "SSL_CIPHER_get_name")]
    public static partial nint CipherGetName(nint cipher);

    [LibraryImport(Crypto, EntryPoint = "d2i_X509")]
    public static partial nint D2iX509(nint reuse, ref byte* der, long length);

    [LibraryImport(Crypto, EntryPoint = "i2d_X509")]
    public static partial int I2dX509(nint x509, byte** der);

    [LibraryImport(Crypto, EntryPoint = "X509_free")]
    public static partial void X509Free(nint x509);

    /// <summary>A private key from DER, PKCS#8 or the algorithm's own form.</summary>
    [LibraryImport(Crypto, EntryPoint = "d2i_AutoPrivateKey")]
    public static partial nint D2iAutoPrivateKey(nint reuse, ref byte* der, long length);

    [LibraryImport(Crypto, EntryPoint = "EVP_PKEY_free")]
    public static partial void EvpPkeyFree(nint key);

    [LibraryImport(Crypto, EntryPoint = "X509_STORE_CTX_get0_cert")]
    public static partial nint X509StoreCtxGet0Cert(nint storeContext);

    [LibraryImport(Crypto, EntryPoint = "X509_STORE_CTX_get_ex_data")]
    public static partial nint X509StoreCtxGetExData(nint storeContext, int index);

    [LibraryImport(Crypto, EntryPoint = "X509_STORE_CTX_set_error")]
    public static partial void X509StoreCtxSetError(nint storeContext, int error);

    /// <summary>BIO_TYPE_SOURCE_SINK, ored with an index from BIO_get_new_index, names a BIO method of ours.</summary>
    public const int BioTypeSourceSink = 0x0400;

    /// <summary>BIO_CTRL_FLUSH.</summary>
    public const int BioCtrlFlush = 11;

    [LibraryImport(Crypto, EntryPoint = "BIO_get_new_index")]
    public static partial int BioGetNewIndex();

    [LibraryImport(Crypto, EntryPoint = "BIO_meth_new", StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint BioMethNew(int type, string name);

    /// <summary>write(bio, data, length) → bytes taken, or -1.</summary>
    [LibraryImport(Crypto, EntryPoint = "BIO_meth_set_write")]
    public static partial int BioMethSetWrite(nint method, delegate* unmanaged<nint, byte*, int, int> write);

    /// <summary>ctrl(bio, command, larg, parg) → the command's result.</summary>
    [LibraryImport(Crypto, EntryPoint = "BIO_meth_set_ctrl")]
    public static partial int BioMethSetCtrl(nint method, delegate* unmanaged<nint, int, long, nint, long> ctrl);

    [LibraryImport(Crypto, EntryPoint = "BIO_set_data")]
    public static partial void BioSetData(nint bio, nint data);

    [LibraryImport(Crypto, EntryPoint = "BIO_get_data")]
    public static partial nint BioGetData(nint bio);

    [LibraryImport(Crypto, EntryPoint = "BIO_set_init")]
    public static partial void BioSetInit(nint bio, int init);

    [LibraryImport(Crypto, EntryPoint = "BIO_s_mem")]
    public static partial nint BioSMem();

    [LibraryImport(Crypto, EntryPoint = "BIO_new")]
    public static partial nint BioNew(nint method);

    [LibraryImport(Crypto, EntryPoint = "BIO_free")]
    public static partial int BioFree(nint bio);

    [LibraryImport(Crypto, EntryPoint = "BIO_write")]
    public static partial int BioWrite(nint bio, byte* buffer, int count);

    [LibraryImport(Crypto, EntryPoint = "ERR_get_error")]
    public static partial nuint ErrGetError();

    [LibraryImport(Crypto, EntryPoint = "ERR_clear_error")]
    public static partial void ErrClearError();

    [LibraryImport(Crypto, EntryPoint = "ERR_reason_error_string")]
    public static partial nint ErrReasonErrorString(nuint error);

    /// <summary>The DER encoding of an X509 object.</summary>
    public static byte[] EncodeCertificate(nint x509)
    {
        var length = I2dX509(x509, null);
        if (length <= 0)
        {
            throw new InvalidOperationException($"cannot encode the peer's certificate: {DrainErrors() ?? "i2d_X509 failed"}");
        }

        var der = new byte[length];
        fixed (byte* p = der)
        {
            var at = p;
            I2dX509(x509, &at);
        }

        return der;
    }

    /// <summary>The reasons of the calling thread's queued errors, oldest first, and an empty queue afterwards.</summary>
    public static string? DrainErrors()
    {
        string? text = null;
        for (var e = ErrGetError(); e != 0; e = ErrGetError())
        {
            var reason = Marshal.PtrToStringUTF8(ErrReasonErrorString(e)) ?? $"error 0x{e:x}";
            text = text is null ? reason : $"{text}; {reason}";
        }

        return text;
    }
}
