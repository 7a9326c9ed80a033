using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace ExportServer.Nbd.Protocol;

/// <summary>Reading fixed-size wire fields and payloads from a connection's pipe, for server and client alike.</summary>
internal static class NbdPipeReading
{
    /// <summary>Copies exactly <paramref name="destination"/>.Length received bytes; EOF first is an <see cref="EndOfStreamException"/>.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public static async ValueTask ReadExactAsync(this PipeReader reader, Memory<byte> destination, CancellationToken ct)
    {
        while (!destination.IsEmpty)
        {
            var result = await reader.ReadAsync(ct).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (buffer.IsEmpty && (result.IsCompleted || result.IsCanceled))
            {
                throw new EndOfStreamException();
            }

            var n = (int)Math.Min(buffer.Length, destination.Length);
            buffer.Slice(0, n).CopyTo(destination.Span);
            reader.AdvanceTo(buffer.GetPosition(n));
            destination = destination[n..];
        }
    }

    /// <summary>
    /// <see cref="ReadExactAsync(PipeReader, Memory{byte}, CancellationToken)"/> for large payloads: what
    /// the pipe already holds is copied, the rest is received from <paramref name="socket"/> (the one the
    /// pipe reads) straight into <paramref name="destination"/>, saving a copy through the pipe's
    /// buffers. Valid only for the pipe's single reader, between its reads.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public static async ValueTask ReadExactAsync(this PipeReader reader, Socket socket, Memory<byte> destination, CancellationToken ct)
    {
        if (reader.TryRead(out var result))
        {
            var buffer = result.Buffer;
            var n = (int)Math.Min(buffer.Length, destination.Length);
            buffer.Slice(0, n).CopyTo(destination.Span);
            reader.AdvanceTo(buffer.GetPosition(n));
            destination = destination[n..];
        }

        while (!destination.IsEmpty)
        {
            var n = await socket.ReceiveAsync(destination, SocketFlags.None, ct).ConfigureAwait(false);
            if (n == 0)
            {
                throw new EndOfStreamException();
            }

            destination = destination[n..];
        }
    }
}
