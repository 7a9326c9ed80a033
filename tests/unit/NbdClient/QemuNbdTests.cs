using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Nbd.Client;
using Xunit;

namespace ExportServer.UnitTests.NbdClientDriver;

/// <summary>The nbd driver against qemu-nbd serving a sparse qcow2 image made by qemu-img and qemu-io.</summary>
public sealed class QemuNbdTests : IAsyncLifetime
{
    private const long Size = 8 * 1024 * 1024;
    private readonly string _dir = Directory.CreateTempSubdirectory("qemunbd").FullName;
    private readonly BlockGraph _graph = new();
    private ForeignServer _server = null!;
    private JsonArray _map = null!;

    private string Image => Path.Combine(_dir, "disk.qcow2");

    private string SocketPath => Path.Combine(_dir, "nbd.sock");

    public async Task InitializeAsync()
    {
        await ForeignServer.RunAsync("qemu-img", "create", "-q", "-f", "qcow2", Image, Size.ToString());
        await ForeignServer.RunAsync(
            "qemu-io", "-f", "qcow2",
            "-c", "write -P 0xab 1M 64k",
            "-c", "write -z 2M 128k",
            "-c", "write -P 0xcd 4M 4k",
            "-c", "write -P 0x11 6M 1M",
            Image);
        _map = (JsonArray)JsonNode.Parse(await ForeignServer.RunAsync("qemu-img", "map", "--output=json", "-f", "qcow2", Image))!;
        _server = await ForeignServer.StartAsync(SocketPath, "qemu-nbd", "-f", "qcow2", "-k", SocketPath, "-x", "disk", "--persistent", "--discard=unmap", Image);
        NbdDriver.Register(_graph);
    }

    public async Task DisposeAsync()
    {
        await _graph.CloseAllAsync();
        _server.Dispose();
        Directory.Delete(_dir, true);
    }

    private async Task<NbdNode> OpenAsync() =>
        (NbdNode)await _graph.AddAsync(NbdTestOptions.Unix(SocketPath, "disk", ("discard", "unmap")));

    [Fact]
    public async Task FallsBackFromExtendedHeadersToStructuredReplies()
    {
        var node = await OpenAsync();
        Assert.False(node.Info.ExtendedHeaders);
        Assert.True(node.Info.StructuredReplies);
        Assert.NotNull(node.Info.BaseAllocationId);
        Assert.Equal(Size, node.Length);
        Assert.Equal($"nbd+unix:///disk?socket={SocketPath}", node.FileName);
    }

    [Fact]
    public async Task BlockStatusMatchesQemuImgMap()
    {
        var node = await OpenAsync();
        var extents = await NbdInterop.MapAsync(node);
        var compared = 0;
        foreach (var entry in _map)
        {
            long start = (long)entry!["start"]!, end = start + (long)entry["length"]!;
            bool data = (bool)entry["data"]!, zero = (bool)entry["zero"]!;
            foreach (var (offset, length, status) in extents.Where(e => e.Offset < end && e.Offset + e.Length > start))
            {
                Assert.True(data == status.IsData, $"data differs at [{Math.Max(offset, start)}, {Math.Min(offset + length, end)})");
                Assert.True(zero == status.IsZero, $"zero differs at [{Math.Max(offset, start)}, {Math.Min(offset + length, end)})");
                Assert.True(status.IsAllocated);
                compared++;
            }
        }

        Assert.True(compared >= 5, $"only {compared} overlaps compared");
        Assert.Contains(extents, e => e.Offset == 1024 * 1024 && e.Status.IsData);
    }

    [Fact]
    public async Task ReadsWhatQemuIoWroteAndWritesWhatQemuIoReads()
    {
        var node = await OpenAsync();
        var head = new byte[65536 + 10];
        await node.ReadAsync(1024 * 1024 - 5, head);
        Assert.All(head.AsSpan(5, 65536).ToArray(), b => Assert.Equal(0xab, b));
        Assert.Equal(0, head[0]);
        Assert.Equal(0, head[^1]);

        await node.WriteAsync(3 * 1024 * 1024 + 1, Enumerable.Repeat((byte)0x5a, 10000).ToArray());
        await _graph.CloseAllAsync();
        _server.Kill();
        var output = await ForeignServer.RunAsync("qemu-io", "-f", "qcow2", "-c", "read -P 0x5a 3145729 10000", "-c", "read -P 0 3145728 1", Image);
        Assert.DoesNotContain("verification failed", output);
        var check = await ForeignServer.RunAsync("qemu-img", "check", "-f", "qcow2", Image);
        Assert.Contains("No errors were found", check);
    }

    [Fact]
    public async Task RandomRoundTripsConcurrencyZeroesTrimAndFlush()
    {
        var node = await OpenAsync();
        await NbdInterop.RoundTripAsync(node, seed: 11);
        await NbdInterop.ConcurrentAsync(node, 64);
        await NbdInterop.ZeroTrimFlushAsync(node);
    }
}
