using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Nbd.Client;
using ExportServer.Nbd.Server;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.NbdClientDriver;

public sealed class NbdUriTests
{
    [Theory]
    [InlineData("nbd://example.org/disk", "example.org", "10809", "disk")]
    [InlineData("nbd://10.0.0.1:1234/a%20b", "10.0.0.1", "1234", "a b")]
    [InlineData("nbd+tcp://host:99", "host", "99", null)]
    [InlineData("nbd://[::1]:10810/x/y", "::1", "10810", "x/y")]
    [InlineData("nbd://[fe80::1]/", "fe80::1", "10809", null)]
    public void TcpUris(string uri, string host, string port, string? export)
    {
        Assert.True(NbdUri.TryParse(uri, out var o));
        Assert.Equal("nbd", (string?)o["driver"]);
        Assert.Equal("inet", (string?)o["server"]!["type"]);
        Assert.Equal(host, (string?)o["server"]!["host"]);
        Assert.Equal(port, (string?)o["server"]!["port"]);
        Assert.Equal(export, (string?)o["export"]);
    }

    [Theory]
    [InlineData("nbd+unix:///disk?socket=/run/nbd.sock", "/run/nbd.sock", "disk")]
    [InlineData("nbd+unix://?socket=/tmp/s", "/tmp/s", null)]
    [InlineData("nbd+unix:///?socket=/tmp/a%20b", "/tmp/a b", null)]
    public void UnixUris(string uri, string path, string? export)
    {
        Assert.True(NbdUri.TryParse(uri, out var o));
        Assert.Equal("unix", (string?)o["server"]!["type"]);
        Assert.Equal(path, (string?)o["server"]!["path"]);
        Assert.Equal(export, (string?)o["export"]);
    }

    [Theory]
    [InlineData("/var/lib/disk.img")]
    [InlineData("file:///disk")]
    [InlineData("nbd+rdma://host/x")]
    [InlineData("nbd://host:notaport/x")]
    [InlineData("nbd://host:70000/x")]
    [InlineData("nbd:///x")]
    [InlineData("nbd://host/x?socket=/s")]
    [InlineData("nbd+unix:///x")]
    [InlineData("nbd+unix://host/x?socket=/s")]
    [InlineData("nbd+unix:///x?socket=/s&other=1")]
    public void NotNbdUris(string uri) => Assert.False(NbdUri.TryParse(uri, out _));

    [Fact]
    public async Task AUriOpensANodeOverTcpWithQemusFileName()
    {
        var port = FreePort();
        await using var server = new NbdServer(new NbdServerOptions { EndPoints = [new IPEndPoint(IPAddress.Loopback, port)] });
        server.Start();
        server.AddExport(new NbdExportOptions { Name = "tcp", Node = new MemoryNode("tcp", 4 << 20), Writable = true });
        var graph = new BlockGraph();
        NbdDriver.Register(graph);

        Assert.True(NbdUri.TryParse($"nbd://127.0.0.1:{port}/tcp", out var options));
        var node = await graph.AddAsync(options);
        Assert.Equal($"nbd://127.0.0.1:{port}/tcp", node.FileName);
        await NbdInterop.RoundTripAsync(node, seed: 61);

        // A host name goes through name resolution.
        Assert.True(NbdUri.TryParse($"nbd://localhost:{port}/tcp", out var named));
        var byName = await graph.AddAsync(named);
        Assert.Equal($"nbd://localhost:{port}/tcp", byName.FileName);
        var check = new byte[4096];
        await byName.ReadAsync(65536, check);
        var direct = new byte[4096];
        await node.ReadAsync(65536, direct);
        Assert.Equal(direct, check);
        await graph.CloseAllAsync();
    }

    /// <summary>A loopback port nobody listens on right now.</summary>
    private static int FreePort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    [Fact]
    public async Task InetOptionsNeedANumericPort()
    {
        var options = new JsonObject
        {
            ["driver"] = "nbd",
            ["server"] = new JsonObject { ["type"] = "inet", ["host"] = "localhost", ["port"] = "nbd" },
        };
        var graph = new BlockGraph();
        NbdDriver.Register(graph);
        var e = await Assert.ThrowsAsync<BlockException>(() => graph.AddAsync(options).AsTask());
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.Contains("server.port", e.Message);
    }
}
