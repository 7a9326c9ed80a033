using System.Net.Sockets;

namespace ExportServer.Nbd.Server;

/// <summary>
/// A plain connection's socket as the stream its request pipe reads, whose next read can be held to a
/// few bytes. After a large WRITE payload was received straight into its buffer, the connection holds
/// the next read to one request header: otherwise the pipe would take in up to its buffer's size of the
/// payload that follows that header, only for it to be copied out again (half of each 256 KiB write of
/// a sequential copy went through the pipe that way).
/// </summary>
internal sealed class ReceiveStream(Socket socket) : NetworkStream(socket, ownsSocket: false)
{
    private int _nextReadLimit;

    /// <summary>The next read takes at most <paramref name="bytes"/>; the ones after it are whole again.</summary>
    public void LimitNextRead(int bytes) => _nextReadLimit = bytes;

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

        return base.ReadAsync(buffer, cancellationToken);
    }
}
