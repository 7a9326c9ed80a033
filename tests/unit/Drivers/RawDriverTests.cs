using ExportServer.Block.Core;
using Xunit;
using static ExportServer.UnitTests.Drivers.DriverTestBed;

namespace ExportServer.UnitTests.Drivers;

public sealed class RawDriverTests : IAsyncLifetime
{
    private const int MiB = 1024 * 1024;
    private readonly DriverTestBed _bed = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _bed.DisposeAsync();

    private Task<BlockNode> OpenRawAsync(string path, string extra = "") =>
        _bed.AddAsync($$"""{"driver":"raw","node-name":"r","file":{"driver":"file","filename":{{Json(path)}}}{{extra}}}""");

    [Fact]
    public async Task WindowMapsOntoTheFile()
    {
        var path = _bed.CreateFile("w.img", MiB);
        var node = await OpenRawAsync(path, ""","offset":4096,"size":"65536" """);
        Assert.Equal(65536, node.Length);
        Assert.Equal(path, node.FileName);
        Assert.Equal("raw", node.DriverName);
        Assert.Equal("file", node.FileChild!.Node.DriverName);

        var original = File.ReadAllBytes(path);
        var back = new byte[65536];
        await node.ReadAsync(0, back);
        Assert.Equal(original.AsSpan(4096, 65536).ToArray(), back);

        var payload = Enumerable.Repeat((byte)0x5A, 1000).ToArray();
        await node.WriteAsync(65536 - 1000, payload);
        await node.WriteZeroesAsync(0, 512);
        var now = File.ReadAllBytes(path);
        Assert.Equal(payload, now.AsSpan(4096 + 65536 - 1000, 1000).ToArray());
        Assert.All(now.AsSpan(4096, 512).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(original.AsSpan(4096 + 65536).ToArray(), now.AsSpan(4096 + 65536).ToArray());
        Assert.Equal(original.AsSpan(0, 4096).ToArray(), now.AsSpan(0, 4096).ToArray());

        var e = await Assert.ThrowsAsync<BlockException>(() => node.WriteAsync(65536, new byte[1]).AsTask());
        Assert.Equal(Errno.ENOSPC, e.Errno);
    }

    [Fact]
    public async Task BlockStatusIsShiftedByTheOffset()
    {
        var path = _bed.CreateSparseFile("s.img", 4 * MiB);
        var file = await _bed.AddAsync($$"""{"driver":"file","node-name":"f","filename":{{Json(path)}}}""");
        await file.WriteAsync(2 * MiB, new byte[MiB].Select(_ => (byte)9).ToArray());
        var node = await _bed.AddAsync("""{"driver":"raw","node-name":"r","file":"f","offset":1048576}""");

        Assert.Equal(3 * MiB, node.Length);
        var hole = await node.GetBlockStatusAsync(0, 3 * MiB);
        Assert.Equal(new BlockStatus(MiB, BlockStatusFlags.Zero | BlockStatusFlags.Allocated), hole);
        var data = await node.GetBlockStatusAsync(MiB, 2 * MiB);
        Assert.Equal(new BlockStatus(MiB, BlockStatusFlags.Data | BlockStatusFlags.Allocated), data);
        Assert.Equal(1, file.UserCount);
    }

    [Fact]
    public async Task TruncatePassesThroughUnlessTheSizeIsFixed()
    {
        var path = _bed.CreateFile("t.img", MiB);
        var node = await OpenRawAsync(path, ""","offset":512""");
        Assert.True(node.CanTruncate);
        await node.TruncateAsync(2 * MiB);
        Assert.Equal(2 * MiB, node.Length);
        Assert.Equal(2 * MiB + 512, new FileInfo(path).Length);

        var fixedPath = _bed.CreateFile("f.img", MiB);
        var fileOptions = $$"""{"driver":"file","filename":{{Json(fixedPath)}}}""";
        var fixedNode = await _bed.AddAsync($$"""{"driver":"raw","node-name":"x","size":4096,"file":{{fileOptions}}}""");
        Assert.False(fixedNode.CanTruncate);
        var e = await Assert.ThrowsAsync<BlockException>(() => fixedNode.TruncateAsync(8192).AsTask());
        Assert.Equal("Cannot resize fixed-size raw disks", e.Message);
    }

    [Theory]
    [InlineData(""","offset":2097152""", "Offset (2097152) cannot be greater than size of the containing file (1048576)")]
    [InlineData(""","offset":512,"size":1048576""",
        "The sum of offset (512) and size (1048576) has to be smaller or equal to the  actual size of the containing file (1048576)")]
    [InlineData(""","offset":512,"size":1000""", "Specified size is not multiple of 512")]
    [InlineData(""","offset":"2M" """, "Parameter 'offset' expects integer")]
    [InlineData(""","offset":"-1" """,
        "Parameter 'offset' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.")]
    public async Task BadWindowsAreRefusedInQemuWords(string extra, string message)
    {
        var path = _bed.CreateFile("b.img", MiB);
        var e = await Assert.ThrowsAsync<BlockException>(() => OpenRawAsync(path, extra));
        Assert.Equal(message, e.MessageWithHint);
        Assert.Empty(_bed.Graph.Nodes);
    }

    [Fact]
    public async Task MissingFileChildIsReported()
    {
        var e = await _bed.AddFailsAsync("""{"driver":"raw","node-name":"r"}""");
        Assert.Equal("Parameter 'file' is missing", e.Message);
    }

    [Fact]
    public async Task InlineChildInheritsReadOnly()
    {
        var path = _bed.CreateFile("ro.img", 4096);
        var node = await OpenRawAsync(path, ""","read-only":true""");
        Assert.True(node.IsReadOnly);
        Assert.True(node.FileChild!.Node.IsReadOnly);
    }
}
