using System.IO.Pipelines;
using System.Net.Sockets;
using ExportServer.Nbd.Protocol;
using Xunit;

namespace ExportServer.UnitTests.Nbd;

/// <summary>
/// Reading a payload partly from the pipe's buffer and the rest straight from the socket keeps the
/// stream in order: the payload arrives whole and what follows it is still read through the pipe.
/// </summary>
public sealed class NbdPipeReadingTests
{
    private static (Socket Client, Socket Server, PipeReader Reader) Pair()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.Connect(listener.LocalEndPoint!);
        var server = listener.Accept();
        var reader = PipeReader.Create(new NetworkStream(server, ownsSocket: false), new StreamPipeReaderOptions(bufferSize: 4096, minimumReadSize: 1024));
        return (client, server, reader);
    }

    [Fact]
    public async Task PayloadSplitBetweenPipeAndSocketArrivesWholeAndInOrder()
    {
        var (client, server, reader) = Pair();
        using (client)
        using (server)
        {
            var payload = new byte[300_000];
            new Random(3).NextBytes(payload);
            var header = new byte[] { 1, 2, 3, 4 };
            var trailer = new byte[] { 9, 8, 7 };
            var sending = Task.Run(async () =>
            {
                await client.SendAsync(header.Concat(payload.AsSpan(0, 1000).ToArray()).ToArray());
                await Task.Delay(50);
                await client.SendAsync(payload.AsMemory(1000));
                await client.SendAsync(trailer);
            });

            var head = new byte[4];
            await reader.ReadExactAsync(head, CancellationToken.None);
            Assert.Equal(header, head);
            var received = new byte[payload.Length];
            await reader.ReadExactAsync(server, received, CancellationToken.None);
            Assert.Equal(payload, received);
            var tail = new byte[3];
            await reader.ReadExactAsync(tail, CancellationToken.None);
            Assert.Equal(trailer, tail);
            await sending;
        }
    }

    /// <summary>
    /// After a payload taken straight from the socket, a read held to one header takes that header
    /// alone although the next payload is already waiting; the read after it is whole again.
    /// </summary>
    [Fact]
    public async Task AReadHeldToAHeaderLeavesTheNextPayloadInTheSocket()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        listener.Listen(1);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.Connect(listener.LocalEndPoint!);
        using var server = listener.Accept();
        var stream = new ExportServer.Nbd.Server.ReceiveStream(server);
        var reader = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 128 * 1024, minimumReadSize: 16 * 1024, leaveOpen: true));

        var first = new byte[28];
        var second = Enumerable.Range(0, 28).Select(i => (byte)(100 + i)).ToArray();
        var payload = new byte[64 * 1024];
        new Random(5).NextBytes(payload);
        var rest = new byte[10_000];
        new Random(6).NextBytes(rest);
        await client.SendAsync(first.Concat(payload).ToArray());
        await reader.ReadExactAsync(new byte[28], CancellationToken.None);
        var received = new byte[payload.Length];
        await reader.ReadExactAsync(server, received, CancellationToken.None);
        Assert.Equal(payload, received);

        var sending = client.SendAsync(second.Concat(payload).Concat(rest).ToArray());
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (server.Available < second.Length + payload.Length + rest.Length && DateTime.UtcNow < deadline)
        {
            await Task.Delay(5);
        }

        stream.LimitNextRead(28);
        var held = await reader.ReadAsync();
        Assert.Equal(28, held.Buffer.Length);
        Assert.Equal(second, System.Buffers.BuffersExtensions.ToArray(held.Buffer));
        reader.AdvanceTo(held.Buffer.End);
        Assert.Equal(payload.Length + rest.Length, server.Available);

        await reader.ReadExactAsync(server, received, CancellationToken.None);
        Assert.Equal(payload, received);
        var whole = await reader.ReadAsync();
        Assert.True(whole.Buffer.Length > 28, $"the read after the held one took {whole.Buffer.Length} bytes");
        reader.AdvanceTo(whole.Buffer.Start);
        var tail = new byte[rest.Length];
        await reader.ReadExactAsync(tail, CancellationToken.None);
        Assert.Equal(rest, tail);
        await sending;
    }

    [Fact]
    public async Task EndOfStreamInsideThePayloadIsAnError()
    {
        var (client, server, reader) = Pair();
        using (server)
        {
            await client.SendAsync(new byte[] { 1, 2, 3, 4, 5, 6 });
            client.Shutdown(SocketShutdown.Both);
            client.Dispose();
            var head = new byte[2];
            await reader.ReadExactAsync(head, CancellationToken.None);
            await Assert.ThrowsAsync<EndOfStreamException>(async () => await reader.ReadExactAsync(server, new byte[100], CancellationToken.None));
        }
    }
}
