using System.Net;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using ExportServer.Nbd.Tls;
using Xunit;

namespace ExportServer.UnitTests.Tls;

/// <summary>keys.psk parsing, and TLS-PSK sessions between our own server and client over loopback TCP.</summary>
public sealed class PskTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("psk-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("alice:00ff\nbob:0102\n", "bob", "0102")]
    [InlineData("al:11\nalice:22\nalice:33\n", "alice", "22")]
    [InlineData("alice:abcd\r\n", "alice", "abcd")]
    [InlineData("alicex:11\n", "alice", null)]
    [InlineData("xalice:11\n", "alice", null)]
    [InlineData("alice\n", "alice", null)]
    public void TheFirstLineForTheUsernameGivesTheKey(string content, string username, string? hex) =>
        Assert.Equal(hex, PskKeyFile.FindHexKey(content, username));

    [Theory]
    [InlineData("00ff10", new byte[] { 0, 0xff, 0x10 }, null)]
    [InlineData("ABcd", new byte[] { 0xab, 0xcd }, null)]
    [InlineData("abc", null, "Error in parsing.")]
    [InlineData("zz", null, "Error in parsing.")]
    [InlineData("", null, "The request is invalid.")]
    public void KeysAreHex(string hex, byte[]? key, string? error)
    {
        Assert.Equal(key, PskKeyFile.Decode(hex, out var reason));
        Assert.Equal(error, reason);
    }

    /// <summary>Both directions at once, in writes of many sizes: every byte arrives, in order, under one session.</summary>
    [Fact]
    public async Task DataFlowsBothWaysAtOnce()
    {
        var key = RandomNumberGenerator.GetBytes(32);
        var (serverCreds, clientCreds) = await CredsAsync(key, key, "alice");
        var (serverSocket, clientSocket) = await SocketPairAsync();
        using var ss = serverSocket;
        using var cs = clientSocket;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var accept = serverCreds.AcceptAsync(serverSocket, cts.Token);
        var client = await clientCreds.ConnectAsync(clientSocket, null, cts.Token);
        var server = await accept;
        await using var s = server.Stream;
        await using var c = client.Stream;
        Assert.Equal("alice", server.PeerIdentity);
        Assert.Null(client.PeerIdentity);
        Assert.Equal("TLSv1.3", server.Protocol);

        var up = RandomNumberGenerator.GetBytes(3 << 20);
        var down = RandomNumberGenerator.GetBytes(5 << 20);
        await Task.WhenAll(WriteInPiecesAsync(c, up), WriteInPiecesAsync(s, down), ExpectAsync(s, up), ExpectAsync(c, down)).WaitAsync(cts.Token);
    }

    [Fact]
    public async Task AWrongKeyFailsBothSidesAndNamesTheUsername()
    {
        var (serverFailure, clientFailure) = await FailAsync(RandomNumberGenerator.GetBytes(32), RandomNumberGenerator.GetBytes(32), "alice");
        Assert.Contains("(PSK username alice)", serverFailure.Message);
        Assert.Contains("(PSK username alice)", clientFailure.Message);
    }

    [Fact]
    public async Task AnUnknownUsernameIsRefusedWithTheReason()
    {
        var key = RandomNumberGenerator.GetBytes(32);
        var (serverFailure, _) = await FailAsync(key, key, "carol");
        Assert.Equal($"Username carol not found in PSK file {Path.Combine(_dir, "keys.psk")}", serverFailure.Message);
    }

    /// <summary>A server that knows alice's key, and a client of <paramref name="username"/> with <paramref name="clientKey"/>.</summary>
    private async Task<(TlsCredsPsk Server, TlsCredsPsk Client)> CredsAsync(byte[] serverKey, byte[] clientKey, string username)
    {
        var path = Path.Combine(_dir, "keys.psk");
        await File.WriteAllTextAsync(path, $"alice:{Convert.ToHexString(serverKey)}\n");
        return (new TlsCredsPsk("t0", TlsEndpoint.Server, path, null, null), new TlsCredsPsk("c0", TlsEndpoint.Client, path, username, clientKey));
    }

    private static async Task<(Socket Server, Socket Client)> SocketPairAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!);
        return (await listener.AcceptAsync(), client);
    }

    /// <summary>Both handshakes fail; the server's side closes its socket when it gives up, as the NBD server does.</summary>
    private async Task<(Exception Server, Exception Client)> FailAsync(byte[] serverKey, byte[] clientKey, string username)
    {
        var (serverCreds, clientCreds) = await CredsAsync(serverKey, clientKey, username);
        var (serverSocket, clientSocket) = await SocketPairAsync();
        using var ss = serverSocket;
        using var cs = clientSocket;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var server = Assert.ThrowsAsync<AuthenticationException>(async () =>
        {
            try
            {
                await serverCreds.AcceptAsync(serverSocket, cts.Token);
            }
            finally
            {
                serverSocket.Shutdown(SocketShutdown.Both);
            }
        });
        var client = Assert.ThrowsAsync<AuthenticationException>(() => clientCreds.ConnectAsync(clientSocket, null, cts.Token));
        return (await server, await client);
    }

    private static async Task WriteInPiecesAsync(Stream stream, byte[] data)
    {
        int[] sizes = [1, 7, 512, 4096, 16384, 16385, 65536, 65537, 300_000];
        for (int at = 0, i = 0; at < data.Length; i++)
        {
            var n = Math.Min(sizes[i % sizes.Length], data.Length - at);
            await stream.WriteAsync(data.AsMemory(at, n));
            at += n;
        }
    }

    private static async Task ExpectAsync(Stream stream, byte[] expected)
    {
        var got = new byte[expected.Length];
        await stream.ReadExactlyAsync(got);
        Assert.Equal(expected, got);
    }
}
