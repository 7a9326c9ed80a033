using System.Net.Sockets;
using ExportServer.Nbd.Server;
using Xunit;

namespace ExportServer.UnitTests.Nbd;

/// <summary>The request stream's receive without waiting, which the busy-polling receive loop polls with.</summary>
public sealed class ReceiveStreamTests
{
    private static (Socket Server, Socket Client) Pair()
    {
        var path = Path.Combine(Path.GetTempPath(), $"rs-{Guid.NewGuid():N}.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(path));
        var server = listener.Accept();
        File.Delete(path);
        return (server, client);
    }

    [Fact]
    public async Task BytesTakenWithoutWaitingComeFirstInTheNextRead()
    {
        var (server, client) = Pair();
        using (server)
        using (client)
        using (var stream = new ReceiveStream(server))
        {
            Assert.False(stream.TryReceiveNow());
            Assert.False(stream.HasEarlyBytes);

            client.Send("header"u8);
            var deadline = DateTime.UtcNow.AddSeconds(5);
            while (!stream.TryReceiveNow())
            {
                Assert.True(DateTime.UtcNow < deadline);
            }

            Assert.True(stream.HasEarlyBytes);
            client.Send("-rest"u8);

            // The early bytes alone, then the socket again.
            var buffer = new byte[64];
            var n = await stream.ReadAsync(buffer);
            Assert.Equal("header", System.Text.Encoding.ASCII.GetString(buffer, 0, n));
            Assert.False(stream.HasEarlyBytes);
            n = await stream.ReadAsync(buffer);
            Assert.Equal("-rest", System.Text.Encoding.ASCII.GetString(buffer, 0, n));
        }
    }

    [Fact]
    public async Task ALimitedNextReadLimitsWhatIsTakenEarly()
    {
        var (server, client) = Pair();
        using (server)
        using (client)
        using (var stream = new ReceiveStream(server))
        {
            client.Send(new byte[ReceiveStream.EarlyCapacity * 2]);
            Thread.Sleep(50);
            stream.LimitNextRead(28);
            Assert.True(stream.TryReceiveNow());
            var buffer = new byte[ReceiveStream.EarlyCapacity * 4];
            Assert.Equal(28, await stream.ReadAsync(buffer));

            // Without a limit at most EarlyCapacity bytes are taken early.
            Assert.True(stream.TryReceiveNow());
            Assert.Equal(ReceiveStream.EarlyCapacity, await stream.ReadAsync(buffer));
        }
    }

    [Fact]
    public async Task TheEndOfTheStreamStopsThePollAndTheReadSeesIt()
    {
        var (server, client) = Pair();
        using (server)
        using (var stream = new ReceiveStream(server))
        {
            client.Shutdown(SocketShutdown.Send);
            client.Dispose();
            Assert.True(stream.TryReceiveNow());
            Assert.False(stream.HasEarlyBytes);
            Assert.Equal(0, await stream.ReadAsync(new byte[16]));
        }
    }

    /// <summary>
    /// A reset the poll meets is reported once by the socket; the next read must fail with it, not
    /// find a quiet end of the stream.
    /// </summary>
    [Fact]
    public async Task AResetThePollMetFailsTheNextRead()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.Connect(listener.LocalEndPoint!);
        using var server = listener.Accept();
        using var stream = new ReceiveStream(server);
        Assert.False(stream.TryReceiveNow());

        // Closing with a zero linger time sends a reset.
        client.LingerState = new LingerOption(true, 0);
        client.Close();
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (!stream.TryReceiveNow())
        {
            Assert.True(DateTime.UtcNow < deadline);
        }

        Assert.False(stream.HasEarlyBytes);
        var e = await Assert.ThrowsAsync<IOException>(async () => _ = await stream.ReadAsync(new byte[16]));
        Assert.Contains("reset", e.Message, StringComparison.OrdinalIgnoreCase);
    }
}
