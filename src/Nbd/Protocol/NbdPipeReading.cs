using System.Buffers;
using System.IO.Pipelines;
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
}
