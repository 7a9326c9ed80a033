using ExportServer.Block.Core;
using ExportServer.Nbd.Client;
using Xunit;

namespace ExportServer.UnitTests.NbdClientDriver;

/// <summary>The nbd driver against nbdkit: its memory plugin, filters that impose limits or delays, old handshakes, crashes and restarts.</summary>
public sealed class NbdkitTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("nbdkit").FullName;
    private readonly BlockGraph _graph = new();
    private readonly List<ForeignServer> _servers = new();

    private string SocketPath => Path.Combine(_dir, "nbd.sock");

    public Task InitializeAsync()
    {
        NbdDriver.Register(_graph);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _graph.CloseAllAsync();
        foreach (var s in _servers)
        {
            s.Dispose();
        }

        Directory.Delete(_dir, true);
    }

    /// <summary>Starts nbdkit in the foreground; the test kills its servers itself.</summary>
    private async Task<ForeignServer> StartAsync(params string[] args)
    {
        File.Delete(SocketPath);
        var server = await ForeignServer.StartAsync(SocketPath, "nbdkit", ["-f", "-U", SocketPath, .. args]);
        _servers.Add(server);
        return server;
    }

    private async Task<NbdNode> OpenAsync(params (string Key, System.Text.Json.Nodes.JsonNode Value)[] extra) =>
        (NbdNode)await _graph.AddAsync(NbdTestOptions.Unix(SocketPath, string.Empty, [("discard", "unmap"), .. extra]));

    private string CreateImage(long size)
    {
        var file = Path.Combine(_dir, "disk.img");
        using var f = File.Create(file);
        f.SetLength(size);
        return file;
    }

    [Fact]
    public async Task MemoryPluginRoundTripsConcurrencyZeroesTrimAndFlush()
    {
        await StartAsync("memory", "64M");
        var node = await OpenAsync();
        Assert.Equal(64L << 20, node.Length);
        Assert.True(node.Info.StructuredReplies);
        Assert.False(node.Info.ExtendedHeaders);
        Assert.Equal($"nbd+unix://?socket={SocketPath}", node.FileName);

        await NbdInterop.RoundTripAsync(node, seed: 21);
        await NbdInterop.ConcurrentAsync(node, 64);
        await NbdInterop.ZeroTrimFlushAsync(node);
    }

    [Fact]
    public async Task MemoryPluginReportsHolesAndData()
    {
        await StartAsync("memory", "16M");
        var node = await OpenAsync();
        var empty = await node.GetBlockStatusAsync(0, node.Length);
        Assert.Equal(node.Length, empty.Length);
        Assert.Equal(BlockStatusFlags.Zero | BlockStatusFlags.Allocated, empty.Flags);

        await node.WriteAsync(1 << 20, Enumerable.Repeat((byte)7, 65536).ToArray());
        var map = await NbdInterop.MapAsync(node);
        var data = map.Where(e => e.Status.IsData).ToList();
        Assert.Single(data);
        Assert.Equal(1 << 20, data[0].Offset);
        Assert.Equal(65536, data[0].Length);
    }

    [Fact]
    public async Task BlockSizeLimitsFromTheServerAreRespected()
    {
        // With error-policy=error, nbdkit fails any request that breaks the limits it advertises.
        await StartAsync(
            "--filter=blocksize-policy", "memory", "8M",
            "blocksize-minimum=512", "blocksize-preferred=4096", "blocksize-maximum=65536", "blocksize-error-policy=error");
        var node = await OpenAsync();
        Assert.Equal(512, node.Limits.RequestAlignment);
        Assert.Equal(65536, node.Limits.MaxTransfer);
        Assert.Equal(4096, node.Limits.OptimalTransfer);

        await NbdInterop.RoundTripAsync(node, seed: 31);
        await NbdInterop.ZeroTrimFlushAsync(node);
    }

    [Fact]
    public async Task SimpleRepliesWhenTheServerRefusesStructuredReplies()
    {
        await StartAsync("--no-sr", "memory", "8M");
        var node = await OpenAsync();
        Assert.False(node.Info.StructuredReplies);
        Assert.Null(node.Info.BaseAllocationId);
        Assert.Equal(BlockStatusFlags.Data | BlockStatusFlags.Allocated, (await node.GetBlockStatusAsync(0, 4096)).Flags);

        await NbdInterop.RoundTripAsync(node, seed: 41);
        await NbdInterop.ConcurrentAsync(node, 64);
    }

    [Fact]
    public async Task ExportNameForAServerWithoutFixedNewstyle()
    {
        await StartAsync("--mask-handshake=0", "memory", "8M");
        var node = await OpenAsync();
        Assert.False(node.Info.StructuredReplies);
        Assert.Equal(8L << 20, node.Length);
        await NbdInterop.RoundTripAsync(node, seed: 51);
    }

    [Fact]
    public async Task ServerKilledMidStreamFailsPendingRequests()
    {
        var server = await StartAsync("--filter=delay", "memory", "8M", "rdelay=5");
        var node = await OpenAsync();
        var pending = Enumerable.Range(0, 8).Select(i => node.ReadAsync(i * 4096L, new byte[4096]).AsTask()).ToArray();
        await Task.Delay(200);
        Assert.All(pending, t => Assert.False(t.IsCompleted));

        server.Kill();
        foreach (var t in pending)
        {
            var e = await Assert.ThrowsAsync<BlockException>(() => t.WaitAsync(TimeSpan.FromSeconds(3)));
            Assert.Equal(Errno.EIO, e.Errno);
        }

        var next = await Assert.ThrowsAsync<BlockException>(() => node.WriteAsync(0, new byte[512]).AsTask());
        Assert.Equal(Errno.EIO, next.Errno);
    }

    [Fact]
    public async Task ReconnectDelayCarriesIoAcrossAServerRestart()
    {
        var file = CreateImage(16 << 20);

        var server = await StartAsync("file", file);
        var node = await OpenAsync(("reconnect-delay", 10L));
        var data = Enumerable.Range(0, 65536).Select(i => (byte)(i * 7)).ToArray();
        await node.WriteAsync(4096, data, WriteFlags.Fua);

        server.Kill();
        var read = new byte[65536];
        var pending = node.ReadAsync(4096, read).AsTask();
        await Task.Delay(300);
        Assert.False(pending.IsCompleted);

        await StartAsync("file", file);
        await pending.WaitAsync(TimeSpan.FromSeconds(8));
        Assert.Equal(data, read);
        await node.WriteAsync(0, new byte[] { 9 });
        var one = new byte[1];
        await node.ReadAsync(0, one);
        Assert.Equal(9, one[0]);
    }

    [Fact]
    public async Task ARequestInFlightWhenTheServerDiesIsSentAgainAfterTheReconnect()
    {
        var file = CreateImage(1 << 20);
        await File.WriteAllBytesAsync(file, Enumerable.Repeat((byte)0x42, 1 << 20).ToArray());
        var server = await StartAsync("--filter=delay", "file", file, "rdelay=1");
        var node = await OpenAsync(("reconnect-delay", 10L));
        var read = new byte[4096];
        var pending = node.ReadAsync(8192, read).AsTask();
        await Task.Delay(200);
        Assert.False(pending.IsCompleted);

        server.Kill();
        await Task.Delay(200);
        Assert.False(pending.IsCompleted);
        await StartAsync("--filter=delay", "file", file, "rdelay=1");
        await pending.WaitAsync(TimeSpan.FromSeconds(8));
        Assert.All(read, b => Assert.Equal(0x42, b));
    }

    [Fact]
    public async Task ReconnectDelayRunsOutThenTheNodeRecoversLater()
    {
        var file = CreateImage(1 << 20);

        var server = await StartAsync("file", file);
        var node = await OpenAsync(("reconnect-delay", 1L));
        server.Kill();

        var started = Environment.TickCount64;
        var e = await Assert.ThrowsAsync<BlockException>(() => node.ReadAsync(0, new byte[512]).AsTask().WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(Errno.EIO, e.Errno);
        Assert.InRange(Environment.TickCount64 - started, 0, 3000);

        // Reconnection goes on in the background: a server that comes back serves new requests.
        await StartAsync("file", file);
        var deadline = Environment.TickCount64 + 8000;
        while (true)
        {
            try
            {
                await node.ReadAsync(0, new byte[512]);
                break;
            }
            catch (BlockException) when (Environment.TickCount64 < deadline)
            {
                await Task.Delay(100);
            }
        }
    }
}
