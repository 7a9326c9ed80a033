using System.Net.Sockets;
using ExportServer.Block.Core;
using ExportServer.Nbd.Client;
using ExportServer.Nbd.Protocol;
using Xunit;
using C = ExportServer.Nbd.Protocol.NbdConstants;

namespace ExportServer.UnitTests.NbdClientDriver;

/// <summary>The client against a scripted server: fallbacks, out-of-order replies, and a server that breaks the protocol.</summary>
public sealed class NbdClientProtocolTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("nbdscript").FullName;

    private string SocketPath => Path.Combine(_dir, "s.sock");

    public void Dispose() => Directory.Delete(_dir, true);

    private async Task<(ScriptedServer Server, NbdClient Client, Socket Peer)> ConnectAsync()
    {
        var server = new ScriptedServer(SocketPath, 1 << 20);
        var client = await NbdClient.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath), "x", CancellationToken.None);
        return (server, client, await server.Connection);
    }

    [Fact]
    public async Task FallsBackToExportNameAndMatchesOutOfOrderSimpleReplies()
    {
        var (server, client, peer) = await ConnectAsync();
        using var _ = server;
        await using var __ = client;
        Assert.False(client.Info.StructuredReplies);
        Assert.Equal(1UL << 20, client.Info.Size);

        var first = new byte[8];
        var second = new byte[8];
        var a = client.ReadAsync(0, first).AsTask();
        var b = client.ReadAsync(8, second).AsTask();
        var ra = await ScriptedServer.ReadRequestAsync(peer);
        var rb = await ScriptedServer.ReadRequestAsync(peer);
        Assert.Equal(C.CmdRead, ra.Type);
        Assert.NotEqual(ra.Cookie, rb.Cookie);

        // Answer the later request first, and one of them with an error.
        await ScriptedServer.SendSimpleReplyAsync(peer, 0, rb.Cookie, ScriptedServer.U64(rb.Offset + 1));
        await ScriptedServer.SendSimpleReplyAsync(peer, C.ENOSPC, ra.Cookie);
        var bytes = rb.Offset == 8 ? second : first;
        await (rb.Offset == 8 ? b : a);
        Assert.Equal(ScriptedServer.U64(rb.Offset + 1), bytes);
        var e = await Assert.ThrowsAsync<BlockException>(() => rb.Offset == 8 ? a : b);
        Assert.Equal(Errno.ENOSPC, e.Errno);
    }

    [Fact]
    public async Task AReplyWithAnUnknownCookieEndsTheConnectionAndFailsEveryone()
    {
        var (server, client, peer) = await ConnectAsync();
        using var _ = server;
        await using var __ = client;
        var pending = Enumerable.Range(0, 3).Select(i => client.FlushAsync().AsTask()).ToArray();
        for (var i = 0; i < 3; i++)
        {
            await ScriptedServer.ReadRequestAsync(peer);
        }

        await ScriptedServer.SendSimpleReplyAsync(peer, 0, 0xdead);
        foreach (var t in pending)
        {
            var e = await Assert.ThrowsAsync<BlockException>(() => t.WaitAsync(TimeSpan.FromSeconds(5)));
            Assert.Equal(Errno.EIO, e.Errno);
        }

        Assert.True(client.IsBroken);
        await client.Completion.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task DisconnectSendsDisc()
    {
        var (server, client, peer) = await ConnectAsync();
        using var _ = server;
        await client.DisposeAsync();
        var disc = await ScriptedServer.ReadRequestAsync(peer);
        Assert.Equal(C.CmdDisc, disc.Type);
        Assert.Equal(0, await peer.ReceiveAsync(new byte[1]));
        Assert.False(client.IsBroken);
    }

    /// <summary>
    /// A server without NBD_FLAG_CAN_MULTI_CONN gets one connection: by default silently, and an explicit
    /// multi-conn above 1 is refused (after the one connection, closed again).
    /// </summary>
    [Fact]
    public async Task WithoutTheMultiConnFlagOneConnectionAndAnExplicitRequestIsRefused()
    {
        var graph = new BlockGraph();
        NbdDriver.Register(graph);
        using (var server = new ScriptedServer(SocketPath, 1 << 20))
        {
            var e = await Assert.ThrowsAsync<BlockException>(() => graph.AddAsync(NbdTestOptions.Unix(SocketPath, "x", ("multi-conn", 2L))).AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
            Assert.Equal(Errno.EINVAL, e.Errno);
            Assert.Equal("Parameter 'multi-conn': the NBD server does not allow more than one connection to export 'x' (no NBD_FLAG_CAN_MULTI_CONN)", e.Message);
            var peer = await server.Connection;
            Assert.Equal(C.CmdDisc, (await ScriptedServer.ReadRequestAsync(peer).WaitAsync(TimeSpan.FromSeconds(10))).Type);
        }

        File.Delete(SocketPath);
        using (var server = new ScriptedServer(SocketPath, 1 << 20))
        {
            var node = (NbdNode)await graph.AddAsync(NbdTestOptions.Unix(SocketPath, "x")).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(1, node.ConnectionCount);
            var peer = await server.Connection;

            // Closing flushes the node first: the one connection gets the FLUSH, then DISC.
            var closing = graph.CloseAllAsync().AsTask();
            var flush = await ScriptedServer.ReadRequestAsync(peer).WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(C.CmdFlush, flush.Type);
            await ScriptedServer.SendSimpleReplyAsync(peer, 0, flush.Cookie);
            Assert.Equal(C.CmdDisc, (await ScriptedServer.ReadRequestAsync(peer).WaitAsync(TimeSpan.FromSeconds(10))).Type);
            await closing.WaitAsync(TimeSpan.FromSeconds(10));
        }
    }
}
