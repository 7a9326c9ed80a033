using System.Buffers;
using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace ExportServer.Nbd.Tls.OpenSsl;

/// <summary>
/// A TLS session over a connected socket, with a pre-shared key or (server side) an x509 certificate: an
/// OpenSSL SSL object that reads from a memory BIO the socket is read into and writes its records through
/// a BIO of ours straight into a send buffer, so every wait is an async socket call and OpenSSL never
/// blocks. Like SslStream it allows one read and one write at a time, concurrently: every call into the SSL
/// object holds <see cref="_gate"/> (never across an await), and a full send buffer is taken (a fresh one
/// left in its place) and sent under <see cref="_sendLock"/>, so records leave in the order they were made.
/// </summary>
internal sealed class OpenSslStream : Stream
{
    private const int ReceiveSize = 64 * 1024;

    /// <summary>Plaintext encrypted per step of a write; its ciphertext (records add 22 bytes per 16 KiB) goes out in one send.</summary>
    private const int WriteChunk = 256 * 1024;
    private const int SendSize = WriteChunk + 4096;

    private readonly Socket _socket;
    private readonly object _gate = new();
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly byte[] _receive = new byte[ReceiveSize];

    /// <summary>The BIO method whose writes append to <see cref="_pending"/>, made once for all streams.</summary>
    private static readonly nint s_sinkMethod = CreateSinkMethod();

    /// <summary>Ciphertext made and not yet taken for sending, under <see cref="_gate"/>.</summary>
    private byte[] _pending = ArrayPool<byte>.Shared.Rent(SendSize);
    private int _pendingLength;

    /// <summary>Server: the key for a username, or an exception whose message says why there is none.</summary>
    private readonly Func<string, byte[]>? _serverKeys;

    /// <summary>Client: the username sent and its key.</summary>
    private readonly byte[]? _clientIdentity;
    private readonly byte[]? _clientKey;

    /// <summary>x509 server: judges the client's certificate; its identity, or an exception whose message says why it is refused.</summary>
    private readonly Func<X509Certificate2, string?>? _peerCheck;

    private GCHandle _self;
    private nint _ssl;
    private nint _readBio;
    private nint _writeBio;

    /// <summary>Why our side refused the peer's key during the handshake, when it did.</summary>
    private string? _refusal;

    private OpenSslStream(Socket socket, SafeHandle context, Func<string, byte[]>? serverKeys, string? username, byte[]? key, Func<X509Certificate2, string?>? peerCheck)
    {
        _socket = socket;
        _serverKeys = serverKeys;
        _peerCheck = peerCheck;
        _clientIdentity = username is null ? null : Encoding.UTF8.GetBytes(username);
        _clientKey = key;
        _self = GCHandle.Alloc(this);
        var added = false;
        try
        {
            context.DangerousAddRef(ref added);
            _ssl = LibSsl.SslNew(context.DangerousGetHandle());
        }
        finally
        {
            if (added)
            {
                context.DangerousRelease();
            }
        }

        _readBio = LibSsl.BioNew(LibSsl.BioSMem());
        _writeBio = s_sinkMethod == 0 ? 0 : LibSsl.BioNew(s_sinkMethod);
        if (_ssl == 0 || _readBio == 0 || _writeBio == 0)
        {
            var reason = LibSsl.DrainErrors();
            FreeNative();
            throw new AuthenticationException($"cannot start a TLS session: {reason ?? "out of memory"}");
        }

        LibSsl.BioSetData(_writeBio, GCHandle.ToIntPtr(_self));
        LibSsl.BioSetInit(_writeBio, 1);
        LibSsl.SslSetBio(_ssl, _readBio, _writeBio);
        LibSsl.SslSetExData(_ssl, 0, GCHandle.ToIntPtr(_self));
    }

    /// <summary>The username the peer authenticated with, or its certificate's identity (server side), once the handshake is done.</summary>
    public string? PeerIdentity { get; private set; }

    public string Protocol { get; private set; } = string.Empty;

    public string Cipher { get; private set; } = string.Empty;

    public override bool CanRead => true;

    public override bool CanWrite => true;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    /// <summary>The server's handshake; <paramref name="keys"/> gives the key of the username the client names.</summary>
    public static Task<OpenSslStream> AcceptAsync(Socket socket, PskContext context, Func<string, byte[]> keys, CancellationToken ct) =>
        HandshakeAsync(new OpenSslStream(socket, context, keys, null, null, null), server: true, ct);

    /// <summary>
    /// The server's handshake with a certificate; when the context asks for the client's certificate,
    /// <paramref name="peerCheck"/> judges it and gives the identity authorization rules match.
    /// </summary>
    public static Task<OpenSslStream> AcceptAsync(Socket socket, X509Context context, Func<X509Certificate2, string?> peerCheck, CancellationToken ct) =>
        HandshakeAsync(new OpenSslStream(socket, context, null, null, null, peerCheck), server: true, ct);

    /// <summary>The client's handshake as <paramref name="username"/> with <paramref name="key"/>.</summary>
    public static Task<OpenSslStream> ConnectAsync(Socket socket, PskContext context, string username, byte[] key, CancellationToken ct) =>
        HandshakeAsync(new OpenSslStream(socket, context, null, username, key, null), server: false, ct);

    private static async Task<OpenSslStream> HandshakeAsync(OpenSslStream stream, bool server, CancellationToken ct)
    {
        try
        {
            await stream.HandshakeAsync(server, ct).ConfigureAwait(false);
            return stream;
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async Task HandshakeAsync(bool server, CancellationToken ct)
    {
        lock (_gate)
        {
            if (server)
            {
                LibSsl.SslSetAcceptState(_ssl);
            }
            else
            {
                LibSsl.SslSetConnectState(_ssl);
            }
        }

        while (true)
        {
            var (done, error, reason) = StepHandshake();
            try
            {
                await SendPendingAsync(ct).ConfigureAwait(false);
            }
            catch (Exception e) when (!done && error != LibSsl.ErrorWantRead && e is SocketException or IOException)
            {
                // The alert could not be delivered; the handshake's own failure is what matters.
            }

            if (done)
            {
                return;
            }

            if (error != LibSsl.ErrorWantRead)
            {
                throw new AuthenticationException(reason);
            }

            int received;
            try
            {
                received = await ReceiveAsync(ct).ConfigureAwait(false);
            }
            catch (SocketException e)
            {
                throw new AuthenticationException(Failure($"the peer broke the connection during the TLS handshake: {e.Message}"), e);
            }

            if (received == 0)
            {
                throw new AuthenticationException(Failure("the peer closed the connection during the TLS handshake"));
            }
        }
    }

    private (bool Done, int Error, string Reason) StepHandshake()
    {
        lock (_gate)
        {
            LibSsl.ErrClearError();
            var rc = LibSsl.SslDoHandshake(_ssl);
            if (rc == 1)
            {
                Protocol = Marshal.PtrToStringUTF8(LibSsl.SslGetVersion(_ssl)) ?? string.Empty;
                Cipher = Marshal.PtrToStringUTF8(LibSsl.CipherGetName(LibSsl.SslGetCurrentCipher(_ssl))) ?? string.Empty;
                return (true, LibSsl.ErrorNone, string.Empty);
            }

            var error = LibSsl.SslGetError(_ssl, rc);
            var reason = LibSsl.DrainErrors() ?? (error == LibSsl.ErrorSyscall ? "the peer closed the connection during the TLS handshake" : $"SSL error {error}");
            return (false, error, Failure(reason));
        }
    }

    /// <summary>Why the handshake failed: our refusal of the peer's username or certificate, or OpenSSL's reason with the PSK username in play.</summary>
    private string Failure(string reason)
    {
        var username = _peerCheck is not null ? null : PeerIdentity ?? (_clientIdentity is null ? null : Encoding.UTF8.GetString(_clientIdentity));
        return _refusal ?? (username is null ? reason : $"{reason} (PSK username {username})");
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
    {
        if (buffer.IsEmpty)
        {
            return 0;
        }

        while (true)
        {
            var n = Decrypt(buffer.Span, out var error, out var output, out var reason);
            if (output)
            {
                await SendPendingAsync(ct).ConfigureAwait(false);
            }

            if (n > 0)
            {
                return n;
            }

            switch (error)
            {
                case LibSsl.ErrorZeroReturn:
                    return 0;
                case LibSsl.ErrorWantRead:
                    if (await ReceiveAsync(ct).ConfigureAwait(false) == 0)
                    {
                        return 0;
                    }

                    break;
                default:
                    throw new IOException($"TLS read failed: {reason}");
            }
        }
    }

    /// <summary>Decrypts what the read BIO holds into <paramref name="buffer"/>, several records when they are there.</summary>
    private unsafe int Decrypt(Span<byte> buffer, out int error, out bool output, out string? reason)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_ssl == 0, this);
            var total = 0;
            error = LibSsl.ErrorNone;
            reason = null;
            LibSsl.ErrClearError();
            fixed (byte* p = buffer)
            {
                while (total < buffer.Length)
                {
                    if (LibSsl.SslReadEx(_ssl, p + total, (nuint)(buffer.Length - total), out var read) == 1)
                    {
                        total += (int)read;
                        continue;
                    }

                    error = LibSsl.SslGetError(_ssl, 0);
                    reason = LibSsl.DrainErrors() ?? $"SSL error {error}";
                    break;
                }
            }

            output = _pendingLength != 0;
            return total;
        }
    }

    /// <summary>Receives what the socket has into the read BIO; 0 at the end of the stream.</summary>
    private async ValueTask<int> ReceiveAsync(CancellationToken ct)
    {
        var n = await _socket.ReceiveAsync(_receive, SocketFlags.None, ct).ConfigureAwait(false);
        if (n > 0)
        {
            Feed(n);
        }

        return n;
    }

    private unsafe void Feed(int count)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_ssl == 0, this);
            fixed (byte* p = _receive)
            {
                var written = LibSsl.BioWrite(_readBio, p, count);
                Debug.Assert(written == count, "a memory BIO takes all it is given");
            }
        }
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default)
    {
        await _sendLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            while (!buffer.IsEmpty)
            {
                var chunk = Math.Min(buffer.Length, WriteChunk);
                Encrypt(buffer.Span[..chunk]);
                buffer = buffer[chunk..];
                await SendPendingLockedAsync(ct).ConfigureAwait(false);
            }
        }
        finally
        {
            _sendLock.Release();
        }
    }

    private unsafe void Encrypt(ReadOnlySpan<byte> data)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_ssl == 0, this);
            LibSsl.ErrClearError();
            fixed (byte* p = data)
            {
                // Without partial writes and with a memory BIO that grows, a write takes all or fails.
                if (LibSsl.SslWriteEx(_ssl, p, (nuint)data.Length, out _) != 1)
                {
                    throw new IOException($"TLS write failed: {LibSsl.DrainErrors() ?? $"SSL error {LibSsl.SslGetError(_ssl, 0)}"}");
                }
            }
        }
    }

    private async ValueTask SendPendingAsync(CancellationToken ct)
    {
        await _sendLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            await SendPendingLockedAsync(ct).ConfigureAwait(false);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>Sends all ciphertext made so far; the caller holds the send lock.</summary>
    private async ValueTask SendPendingLockedAsync(CancellationToken ct)
    {
        while (Take() is { } taken)
        {
            try
            {
                for (var sent = 0; sent < taken.Length;)
                {
                    sent += await _socket.SendAsync(taken.Buffer.AsMemory(sent, taken.Length - sent), SocketFlags.None, ct).ConfigureAwait(false);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(taken.Buffer);
            }
        }
    }

    /// <summary>The ciphertext made so far, the caller's to send and return to the pool; null when there is none.</summary>
    private (byte[] Buffer, int Length)? Take()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_ssl == 0, this);
            if (_pendingLength == 0)
            {
                return null;
            }

            var taken = (_pending, _pendingLength);
            _pending = ArrayPool<byte>.Shared.Rent(SendSize);
            _pendingLength = 0;
            return taken;
        }
    }

    /// <summary>Appends a record OpenSSL made; called under <see cref="_gate"/>, from inside a call into the SSL object.</summary>
    private void Append(ReadOnlySpan<byte> data)
    {
        if (_pendingLength + data.Length > _pending.Length)
        {
            var larger = ArrayPool<byte>.Shared.Rent(Math.Max(_pending.Length * 2, _pendingLength + data.Length));
            _pending.AsSpan(0, _pendingLength).CopyTo(larger);
            ArrayPool<byte>.Shared.Return(_pending);
            _pending = larger;
        }

        data.CopyTo(_pending.AsSpan(_pendingLength));
        _pendingLength += data.Length;
    }

    private static unsafe nint CreateSinkMethod()
    {
        var method = LibSsl.BioMethNew(LibSsl.BioGetNewIndex() | LibSsl.BioTypeSourceSink, "nbd-tls-send");
        if (method != 0)
        {
            LibSsl.BioMethSetWrite(method, &SinkWrite);
            LibSsl.BioMethSetCtrl(method, &SinkCtrl);
        }

        return method;
    }

    /// <summary>The sink BIO's write: the record goes into its stream's send buffer, whole.</summary>
    [UnmanagedCallersOnly]
    private static unsafe int SinkWrite(nint bio, byte* data, int length)
    {
        var self = LibSsl.BioGetData(bio);
        if (length < 0 || self == 0 || GCHandle.FromIntPtr(self).Target is not OpenSslStream stream)
        {
            return -1;
        }

        stream.Append(new ReadOnlySpan<byte>(data, length));
        return length;
    }

    /// <summary>The sink BIO's control: a flush succeeds (the sender sends what was made), nothing else is known.</summary>
    [UnmanagedCallersOnly]
    private static long SinkCtrl(nint bio, int command, long larg, nint parg) => command == LibSsl.BioCtrlFlush ? 1 : 0;

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) => ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken ct) => WriteAsync(buffer.AsMemory(offset, count), ct).AsTask();

    /// <summary>Writes are sent before they return: nothing is buffered here.</summary>
    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        lock (_gate)
        {
            FreeNative();
            if (_pending.Length != 0)
            {
                ArrayPool<byte>.Shared.Return(_pending);
                _pending = [];
                _pendingLength = 0;
            }
        }

        base.Dispose(disposing);
    }

    private void FreeNative()
    {
        if (_ssl != 0)
        {
            LibSsl.SslFree(_ssl);
        }
        else
        {
            // Not yet handed to an SSL object: freed one by one.
            if (_readBio != 0)
            {
                LibSsl.BioFree(_readBio);
            }

            if (_writeBio != 0)
            {
                LibSsl.BioFree(_writeBio);
            }
        }

        _ssl = _readBio = _writeBio = 0;
        if (_self.IsAllocated)
        {
            _self.Free();
        }
    }

    /// <summary>SSL_CTX_set_psk_server_callback: the key of the username the client sent, or 0 to refuse it.</summary>
    [UnmanagedCallersOnly]
    internal static unsafe uint ServerKey(nint ssl, byte* identity, byte* psk, uint maxPskLength)
    {
        if (FromSsl(ssl) is not { _serverKeys: { } keys } stream)
        {
            return 0;
        }

        var username = Marshal.PtrToStringUTF8((nint)identity) ?? string.Empty;
        try
        {
            var key = keys(username);
            if (key.Length == 0 || key.Length > maxPskLength)
            {
                stream._refusal = $"the key of PSK username '{username}' is {key.Length} bytes long; 1 to {maxPskLength} are possible";
                return 0;
            }

            key.CopyTo(new Span<byte>(psk, key.Length));
            stream.PeerIdentity = username;
            return (uint)key.Length;
        }
        catch (Exception e)
        {
            stream._refusal = e.Message;
            return 0;
        }
    }

    /// <summary>SSL_CTX_set_psk_client_callback: our username (NUL-terminated) and key.</summary>
    [UnmanagedCallersOnly]
    internal static unsafe uint ClientKey(nint ssl, byte* hint, byte* identity, uint maxIdentityLength, byte* psk, uint maxPskLength)
    {
        if (FromSsl(ssl) is not { _clientIdentity: { } name, _clientKey: { } key } stream)
        {
            return 0;
        }

        if (name.Length > maxIdentityLength || key.Length == 0 || key.Length > maxPskLength)
        {
            stream._refusal = $"the PSK username ({name.Length} bytes) or key ({key.Length} bytes) is longer than TLS allows";
            return 0;
        }

        name.CopyTo(new Span<byte>(identity, name.Length));
        identity[name.Length] = 0;
        key.CopyTo(new Span<byte>(psk, key.Length));
        return (uint)key.Length;
    }

    /// <summary>
    /// SSL_CTX_set_cert_verify_callback: the client's certificate is judged here instead of by OpenSSL's own
    /// chain check; a refusal fails the handshake with a bad_certificate alert.
    /// </summary>
    [UnmanagedCallersOnly]
    internal static unsafe int VerifyPeer(nint storeContext, nint arg)
    {
        var ssl = LibSsl.X509StoreCtxGetExData(storeContext, LibSsl.SslGetExDataX509StoreCtxIdx());
        if (FromSsl(ssl) is not { _peerCheck: { } check } stream)
        {
            LibSsl.X509StoreCtxSetError(storeContext, LibSsl.X509ErrorCertRejected);
            return 0;
        }

        try
        {
            using var certificate = X509CertificateLoader.LoadCertificate(LibSsl.EncodeCertificate(LibSsl.X509StoreCtxGet0Cert(storeContext)));
            stream.PeerIdentity = check(certificate);
            return 1;
        }
        catch (Exception e)
        {
            stream._refusal = e.Message;
            LibSsl.X509StoreCtxSetError(storeContext, LibSsl.X509ErrorCertRejected);
            return 0;
        }
    }

    private static OpenSslStream? FromSsl(nint ssl)
    {
        var data = LibSsl.SslGetExData(ssl, 0);
        return data == 0 ? null : GCHandle.FromIntPtr(data).Target as OpenSslStream;
    }
}
