using System.Diagnostics;
using ExportServer.Block.Core;
using Xunit;

namespace ExportServer.UnitTests.Drivers;

public sealed class NullDriverTests : IAsyncLifetime
{
    private readonly DriverTestBed _bed = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _bed.DisposeAsync();

    [Theory]
    [InlineData("null-co")]
    [InlineData("null-aio")]
    public async Task DefaultsFollowQemu(string driver)
    {
        var node = await _bed.AddAsync($$"""{"driver":"{{driver}}","node-name":"n"}""");
        Assert.Equal(1L << 30, node.Length);
        Assert.Equal(driver + "://", node.FileName);
        Assert.Equal(driver, node.DriverName);

        // Without read-zeroes the buffer keeps what it held.
        var buffer = Enumerable.Repeat((byte)0xEE, 4096).ToArray();
        await node.WriteAsync(0, new byte[4096]);
        await node.ReadAsync(0, buffer);
        Assert.All(buffer, b => Assert.Equal(0xEE, b));
        // QEMU's null drivers answer "hole" over NBD: neither data nor zeroes.
        var status = await node.GetBlockStatusAboveAsync(0, node.Length);
        Assert.Equal(new BlockStatus(node.Length, BlockStatusFlags.Allocated, 1), status);
    }

    [Fact]
    public async Task ReadZeroesClearsBuffersAndReportsZeroes()
    {
        var node = await _bed.AddAsync("""{"driver":"null-co","node-name":"n","size":"65536","read-zeroes":"on"}""");
        Assert.Equal(65536, node.Length);
        var buffer = Enumerable.Repeat((byte)0xEE, 4096).ToArray();
        await node.ReadAsync(100, buffer);
        Assert.All(buffer, b => Assert.Equal(0, b));
        var status = await node.GetBlockStatusAboveAsync(0, 65536);
        Assert.Equal(new BlockStatus(65536, BlockStatusFlags.Zero | BlockStatusFlags.Allocated, 1), status);
        await node.WriteZeroesAsync(0, 65536, ZeroFlags.NoFallback);
        await node.FlushAsync();
    }

    [Fact]
    public async Task LatencyDelaysEachRequest()
    {
        var node = await _bed.AddAsync("""{"driver":"null-aio","node-name":"n","latency-ns":50000000}""");
        var clock = Stopwatch.StartNew();
        await node.ReadAsync(0, new byte[512]);
        await node.WriteAsync(0, new byte[512]);
        Assert.True(clock.ElapsedMilliseconds >= 95, $"{clock.ElapsedMilliseconds} ms");
    }

    [Theory]
    [InlineData(""","latency-ns":-1""", "latency-ns is invalid")]
    [InlineData(""","read-zeroes":"x" """, "Parameter 'read-zeroes' expects 'on' or 'off'")]
    [InlineData(""","size":"1k" """, "Parameter 'size' expects integer")]
    public async Task BadOptionsAreRefusedInQemuWords(string extra, string message)
    {
        var e = await _bed.AddFailsAsync($$"""{"driver":"null-co","node-name":"n"{{extra}}}""");
        Assert.Equal(message, e.Message);
    }
}
