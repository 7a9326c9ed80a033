using System.Net.Sockets;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Nbd.Client;
using ExportServer.Nbd.Protocol;
using ExportServer.Nbd.Server;
using ExportServer.UnitTests.Nbd;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.NbdClientDriver;

/// <summary>The client and the nbd driver against our own server, in process over a unix socket.</summary>
public sealed class NbdClientServerTests : IAsyncLifetime
{
    private const int Size = 4 * 1024 * 1024;
    private readonly string _dir = Directory.CreateTempSubdirectory("nbdclient").FullName;
    private readonly BlockGraph _graph = new();
    private NbdServer _server = null!;
    private MemoryNode _memory = null!;
    private SparseNode _sparse = null!;

    private string SocketPath => Path.Combine(_dir, "nbd.sock");

    public Task InitializeAsync()
    {
        _memory = new MemoryNode("mem", Size);
        var sparse = new byte[Size];
        new Random(1).NextBytes(sparse.AsSpan(0, 8192));
        new Random(2).NextBytes(sparse.AsSpan(1024 * 1024, 65536));
        _sparse = new SparseNode("sparse", sparse);
        _server = new NbdServer(new NbdServerOptions { EndPoints = [new UnixDomainSocketEndPoint(SocketPath)] });
        _server.Start();
        _server.AddExport(new NbdExportOptions { Name = "mem", Node = _memory, Writable = true });
        _server.AddExport(new NbdExportOptions { Name = "sparse", Node = _sparse, Writable = true });
        _server.AddExport(new NbdExportOptions { Name = "ro", Node = new MemoryNode("ro", Size) });
        NbdDriver.Register(_graph);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _graph.CloseAllAsync();
        await _server.DisposeAsync();
        Directory.Delete(_dir, true);
    }

    private Task<BlockNode> OpenAsync(string export, params (string Key, JsonNode Value)[] extra) =>
        _graph.AddAsync(NbdTestOptions.Unix(SocketPath, export, extra)).AsTask();

    [Fact]
    public async Task NegotiatesExtendedHeadersBlockSizesAndBaseAllocation()
    {
        var node = (NbdNode)await OpenAsync("mem");

        Assert.Equal("nbd", node.DriverName);
        Assert.Equal(Size, node.Length);
        Assert.False(node.IsReadOnly);
        Assert.Equal($"nbd+unix:///mem?socket={SocketPath}", node.FileName);
        Assert.True(node.Info.ExtendedHeaders);
        Assert.True(node.Info.StructuredReplies);
        Assert.NotNull(node.Info.BaseAllocationId);
        Assert.Equal(1, node.Limits.RequestAlignment);
        Assert.Equal(32 * 1024 * 1024, node.Limits.MaxTransfer);
        Assert.Equal(4096, node.Limits.OptimalTransfer);
    }

    [Fact]
    public async Task RandomReadWriteRoundTripsIncludingUnalignedRanges()
    {
        var node = await OpenAsync("mem");
        await NbdInterop.RoundTripAsync(node, seed: 3);
        await NbdInterop.AssertSameAsync(node, _memory.Data);
    }

    [Fact]
    public async Task SixtyFourConcurrentRequestsEachGetTheirOwnReply()
    {
        var node = await OpenAsync("mem");
        await NbdInterop.ConcurrentAsync(node, 64);
    }

    [Fact]
    public async Task WriteZeroesTrimAndFlushReachTheServer()
    {
        var node = await OpenAsync("mem", ("discard", "unmap"));
        await NbdInterop.ZeroTrimFlushAsync(node);
        Assert.True(_memory.FlushCount > 0);
        Assert.All(_memory.Data.AsSpan(65536, 3 * 65536).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task FastZeroFailsWhenTheServerCannotZeroQuicklyAndTheEngineFallsBackOtherwise()
    {
        var node = await OpenAsync("sparse");
        Assert.True(node.CanFastZero);
        _sparse.RefuseZeroes = true;
        await node.WriteAsync(1024 * 1024, Enumerable.Repeat((byte)1, 8192).ToArray());

        var e = await Assert.ThrowsAsync<BlockException>(() => node.WriteZeroesAsync(1024 * 1024, 4096, ZeroFlags.NoFallback).AsTask());
        Assert.Equal(Errno.ENOTSUP, e.Errno);
        Assert.Equal(1, _sparse.Data[1024 * 1024]);

        await node.WriteZeroesAsync(1024 * 1024, 4096);
        Assert.Equal(0, _sparse.Data[1024 * 1024]);
        Assert.Equal(1, _sparse.Data[(1024 * 1024) + 4096]);
    }

    [Fact]
    public async Task CacheTrimAndWriteZeroesOnTheBareClient()
    {
        await using var client = await NbdClient.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath), "mem", CancellationToken.None);
        await client.WriteAsync(0, Enumerable.Repeat((byte)0xee, 8192).ToArray(), fua: true);
        await client.CacheAsync(0, 8192);
        await client.TrimAsync(4096, 4096);
        await client.WriteZeroesAsync(100, 50, mayUnmap: false, fast: false, fua: true);
        var back = new byte[8192];
        await client.ReadAsync(0, back);
        Assert.Equal(0xee, back[99]);
        Assert.All(back.AsSpan(100, 50).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(0xee, back[150]);
    }

    [Fact]
    public async Task BlockStatusMapsHolesToZeroAndDataToData()
    {
        var node = await OpenAsync("sparse");

        var head = await node.GetBlockStatusAsync(0, Size);
        Assert.Equal(8192, head.Length);
        Assert.Equal(BlockStatusFlags.Data | BlockStatusFlags.Allocated, head.Flags);
        var hole = await node.GetBlockStatusAsync(8192, Size - 8192);
        Assert.Equal(1024 * 1024 - 8192, hole.Length);
        Assert.Equal(BlockStatusFlags.Zero | BlockStatusFlags.Allocated, hole.Flags);
        var data = await node.GetBlockStatusAsync(1024 * 1024, 4096 * 1024 - (1024 * 1024));
        Assert.Equal(65536, data.Length);
        Assert.True(data.IsData);
    }

    [Fact]
    public async Task ServerErrorsComeBackAsTheirErrno()
    {
        await using var client = await NbdClient.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath), "ro", CancellationToken.None);
        Assert.True(client.Info.Has(NbdConstants.FlagReadOnly));

        var e = await Assert.ThrowsAsync<BlockException>(() => client.WriteAsync(0, new byte[512], fua: false).AsTask());
        Assert.Equal(Errno.EPERM, e.Errno);
        e = await Assert.ThrowsAsync<BlockException>(() => client.ReadAsync(Size - 512, new byte[1024]).AsTask());
        Assert.Equal(Errno.EINVAL, e.Errno);

        // The connection survives refused requests.
        var buffer = new byte[4096];
        await client.ReadAsync(0, buffer);
        Assert.False(client.IsBroken);
    }

    [Fact]
    public async Task ReadOnlyExportNeedsReadOnlyOrAutoReadOnly()
    {
        var e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync("ro"));
        Assert.Equal(Errno.EACCES, e.Errno);

        var auto = await OpenAsync("ro", ("auto-read-only", true));
        Assert.True(auto.IsReadOnly);
        var explicitly = await OpenAsync("ro", ("read-only", true));
        Assert.True(explicitly.IsReadOnly);
    }

    [Fact]
    public async Task UnknownExportIsEnoent()
    {
        var e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync("nope"));
        Assert.Equal(Errno.ENOENT, e.Errno);
        Assert.Contains("nope", e.Message);
    }

    [Fact]
    public async Task ServerCuttingTheConnectionFailsPendingRequestsWithoutHanging()
    {
        var node = await OpenAsync("sparse");
        _sparse.GatedOffset = 0;
        var pending = Enumerable.Range(0, 4).Select(_ => node.ReadAsync(0, new byte[4096]).AsTask()).ToArray();
        await Task.Delay(100);
        Assert.All(pending, t => Assert.False(t.IsCompleted));

        var removal = _server.RemoveExportAsync("sparse", hard: true).AsTask();
        foreach (var t in pending)
        {
            var e = await Assert.ThrowsAsync<BlockException>(() => t.WaitAsync(TimeSpan.FromSeconds(5)));
            Assert.Equal(Errno.EIO, e.Errno);
        }

        _sparse.Gate.SetResult();
        await removal;
        var later = await Assert.ThrowsAsync<BlockException>(() => node.ReadAsync(0, new byte[512]).AsTask());
        Assert.Equal(Errno.EIO, later.Errno);
    }

    [Fact]
    public async Task ClosingTheClientFailsWaitingRequestsWithEshutdown()
    {
        var client = await NbdClient.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath), "sparse", CancellationToken.None);
        _sparse.GatedOffset = 4096;
        var pending = client.ReadAsync(4096, new byte[4096]).AsTask();
        await Task.Delay(50);

        await client.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        var e = await Assert.ThrowsAsync<BlockException>(() => pending);
        Assert.Equal(Errno.ESHUTDOWN, e.Errno);
        _sparse.Gate.SetResult();
    }

    [Fact]
    public async Task RefusesTheDirtyBitmapOptionAndUnknownTlsCredentials()
    {
        var e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync("mem", ("x-dirty-bitmap", "qemu:dirty-bitmap:b")));
        Assert.Equal(Errno.ENOTSUP, e.Errno);
        Assert.Contains("x-dirty-bitmap", e.Message);
        e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync("mem", ("tls-creds", "tls0")));
        Assert.Equal("No TLS credentials with id 'tls0'", e.Message);
    }

    [Fact]
    public async Task OptionErrorsNameTheParameter()
    {
        var missing = await Assert.ThrowsAsync<BlockException>(() => _graph.AddAsync(new JsonObject { ["driver"] = "nbd" }).AsTask());
        Assert.Equal("Parameter 'server' is missing", missing.Message);
        var badType = new JsonObject { ["driver"] = "nbd", ["server"] = new JsonObject { ["type"] = "carrier-pigeon" } };
        var e = await Assert.ThrowsAsync<BlockException>(() => _graph.AddAsync(badType).AsTask());
        Assert.Equal("Parameter 'server.type' does not accept value 'carrier-pigeon'", e.Message);
        var extra = NbdTestOptions.Unix(SocketPath, "mem", ("bogus", 1));
        e = await Assert.ThrowsAsync<BlockException>(() => _graph.AddAsync(extra).AsTask());
        Assert.Equal("Parameter 'bogus' is unexpected", e.Message);
    }

    [Fact]
    public async Task OpenTimeoutWaitsForAServerThatComesUpLater()
    {
        var late = Path.Combine(_dir, "late.sock");
        var open = _graph.AddAsync(NbdTestOptions.Unix(late, "late", ("open-timeout", 10L))).AsTask();
        await Task.Delay(300);
        Assert.False(open.IsCompleted, open.Exception?.ToString());

        await using var server = new NbdServer(new NbdServerOptions { EndPoints = [new UnixDomainSocketEndPoint(late)] });
        server.Start();
        server.AddExport(new NbdExportOptions { Name = "late", Node = new MemoryNode("late", 65536), Writable = true });
        var node = await open.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(65536, node.Length);
        await _graph.RemoveAsync(node.NodeName);
    }

    [Fact]
    public async Task WithoutOpenTimeoutAMissingServerFailsAtOnce()
    {
        var e = await Assert.ThrowsAsync<BlockException>(() => _graph.AddAsync(NbdTestOptions.Unix(Path.Combine(_dir, "none.sock"), "x")).AsTask());
        Assert.Equal(Errno.EIO, e.Errno);
        Assert.Contains("Failed to connect", e.Message);
    }

    /// <summary>Our server advertises multi-conn: the node opens four connections by default, multi-conn=N opens N.</summary>
    [Theory]
    [InlineData(null, 4)]
    [InlineData(1L, 1)]
    [InlineData(3L, 3)]
    public async Task MultiConnOpensThatManyConnections(long? requested, int expected)
    {
        var node = (NbdNode)await (requested is { } n ? OpenAsync("mem", ("multi-conn", n)) : OpenAsync("mem"));
        Assert.Equal(expected, node.ConnectionCount);
        Assert.Equal(expected, _server.ClientCount("mem"));
        await _graph.RemoveAsync(node.NodeName);
        var deadline = Environment.TickCount64 + 5000;
        while (_server.ClientCount("mem") > 0 && Environment.TickCount64 < deadline)
        {
            await Task.Delay(20);
        }

        Assert.Equal(0, _server.ClientCount("mem"));
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(17L)]
    public async Task MultiConnOutOfRangeIsRefused(long n)
    {
        var e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync("mem", ("multi-conn", n)));
        Assert.Equal("Parameter 'multi-conn' expects a value between 1 and 16", e.Message);
        Assert.Equal(0, _server.ClientCount("mem"));
    }

    /// <summary>Requests in flight together are spread over the connections; a flush reaches the server once per connection.</summary>
    [Fact]
    public async Task RequestsSpreadOverTheConnectionsAndAFlushGoesToEach()
    {
        var node = (NbdNode)await OpenAsync("sparse", ("multi-conn", 4L));
        _sparse.GatedOffset = 0;
        var pending = Enumerable.Range(0, 8).Select(_ => node.ReadAsync(0, new byte[4096]).AsTask()).ToArray();
        try
        {
            // Eight requests on four idle connections: two on each.
            Assert.Equal([2, 2, 2, 2], node.ConnectionLoads);
            var deadline = Environment.TickCount64 + 5000;
            while (_sparse.GatedReads < 8 && Environment.TickCount64 < deadline)
            {
                await Task.Delay(10);
            }

            Assert.Equal(8, _sparse.GatedReads);
        }
        finally
        {
            _sparse.Gate.TrySetResult();
        }

        await Task.WhenAll(pending);

        var memory = (NbdNode)await OpenAsync("mem", ("multi-conn", 4L));
        var before = _memory.FlushCount;
        await memory.WriteAsync(0, new byte[4096]);
        await memory.FlushAsync();
        Assert.Equal(before + 4, _memory.FlushCount);
    }
}
