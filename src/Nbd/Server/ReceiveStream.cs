using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace ExportServer.Nbd.Server;

/// <summary>
/// A plain connection's socket as the stream its request pipe reads, whose next read can be held to a
/// few bytes, and which can take in what the socket has without waiting (<see cref="TryReceiveNow"/>).
/// After a large WRITE payload was received straight into its buffer, the connection holds the next
/// read to one request header: otherwise the pipe would take in up to its buffer's size of the payload
/// that follows that header, only for it to be copied out again (half of each 256 KiB write of a
/// sequential copy went through the pipe that way).
/// </summary>
internal sealed partial class ReceiveStream(Socket socket) : NetworkStream(socket, ownsSocket: false)
{
    /// <summary>
    /// Most bytes <see cref="TryReceiveNow"/> takes: a 4 KiB WRITE with its header, and no more than
    /// the request pipe's smallest read (16 KiB), so the pipe's next read always takes all of them.
    /// </summary>
    public const int EarlyCapacity = 8192;

    private const int MsgDontWait = 0x40;
    private const int EAGAIN = 11;
    private const int EINTR = 4;

    private int _nextReadLimit;
    private byte[]? _early;
    private int _earlyStart;
    private int _earlyEnd;

    /// <summary>An error the socket reported to <see cref="TryReceiveNow"/>, for the next read to report (0: none).</summary>
    private int _earlyErrno;

    /// <summary>Whether bytes taken by <see cref="TryReceiveNow"/> wait for the next read.</summary>
    public bool HasEarlyBytes => _earlyEnd > _earlyStart;

    /// <summary>The next read takes at most <paramref name="bytes"/>; the ones after it are whole again.</summary>
    public void LimitNextRead(int bytes) => _nextReadLimit = bytes;

    /// <summary>
    /// One non-blocking receive of what the socket holds (at most <see cref="EarlyCapacity"/> bytes, or
    /// the next read's limit), kept for the next read. True when the socket had something: bytes, its
    /// end or an error. A socket reports an error once (after a reset the next receive finds only the
    /// end), so the error is kept and the next read fails with it, as a read that met it would. A
    /// connection busy-polling for its next request (NbdConnection.PollSocket) polls with this: the
    /// call that finds the request has also received it, one system call fewer per request than a
    /// poll(2) followed by the read (1 µs each on this kind of virtual machine, of the 35-40 µs a
    /// 4 KiB read at queue depth 1 takes from request to reply).
    /// </summary>
    public bool TryReceiveNow()
    {
        if (HasEarlyBytes || _earlyErrno != 0)
        {
            return true;
        }

        var early = _early ??= new byte[EarlyCapacity];
        var max = _nextReadLimit > 0 ? Math.Min(_nextReadLimit, EarlyCapacity) : EarlyCapacity;
        var n = Recv(Socket.SafeHandle, early, max, MsgDontWait);
        if (n > 0)
        {
            _earlyStart = 0;
            _earlyEnd = (int)n;
            return true;
        }

        if (n == 0)
        {
            return true;
        }

        var errno = Marshal.GetLastPInvokeError();
        if (errno == EAGAIN || errno == EINTR)
        {
            return false;
        }

        _earlyErrno = errno;
        return true;
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var limit = _nextReadLimit;
        if (limit > 0)
        {
            _nextReadLimit = 0;
            if (buffer.Length > limit)
            {
                buffer = buffer[..limit];
            }
        }

        if (HasEarlyBytes)
        {
            var n = Math.Min(buffer.Length, _earlyEnd - _earlyStart);
            _early.AsSpan(_earlyStart, n).CopyTo(buffer.Span);
            _earlyStart += n;
            return ValueTask.FromResult(n);
        }

        if (_earlyErrno != 0)
        {
            var errno = _earlyErrno;
            _earlyErrno = 0;
            return ValueTask.FromException<int>(new IOException($"Unable to read data from the transport connection: {Marshal.GetPInvokeErrorMessage(errno)}."));
        }

        return base.ReadAsync(buffer, cancellationToken);
    }

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static partial nint Recv(SafeSocketHandle socket, byte[] buffer, nint length, int flags);
}
