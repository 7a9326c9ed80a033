using ExportServer.Block.Core;
using ExportServer.Block.Native;
using ExportServer.Block.Protocols.File;
using Microsoft.Win32.SafeHandles;
using Xunit;

namespace ExportServer.UnitTests.Drivers;

/// <summary>
/// A file node's descriptor stays open while a request uses it, even when a reopen replaced and
/// disposed the handle meanwhile, so the raw descriptor number is never reused under a request.
/// </summary>
public sealed class DescriptorLeaseTests : IAsyncDisposable
{
    private readonly DriverTestBed _bed = new();

    public ValueTask DisposeAsync() => _bed.DisposeAsync();

    [Fact]
    public unsafe void ADisposedHandleStaysOpenUntilTheLastLeaseEnds()
    {
        var path = _bed.CreateFile("a.img", 4096, seed: 5);
        var expected = File.ReadAllBytes(path);
        var handle = File.OpenHandle(path);
        var lease = DescriptorLease.Take(ref handle);
        var fd = lease.Fd;
        handle.Dispose();

        var buffer = new byte[4096];
        fixed (byte* p = buffer)
        {
            Assert.Equal(4096, LibC.PRead(fd, p, 4096, 0));
        }

        Assert.Equal(expected, buffer);
        Assert.Equal(path, LinkOf(fd));
        lease.Dispose();
        Assert.NotEqual(path, LinkOf(fd));
    }

    [Fact]
    public void ALeaseTakesTheReplacementWhenTheHandleWasSwappedAndClosed()
    {
        var path = _bed.CreateFile("b.img", 4096);
        var old = File.OpenHandle(path);
        var current = old;
        old.Dispose();
        current = File.OpenHandle(path);
        var replacement = current;

        // A reader that still saw the old field value retries with the new one.
        using var lease = DescriptorLease.Take(ref current);
        Assert.Same(replacement, lease.Handle);
        replacement.Dispose();
    }

    /// <summary>
    /// Requests that a drained section lets through (work for requests in flight) keep reading the
    /// right data while the node is reopened read-only and read-write again and again.
    /// </summary>
    [Fact]
    public async Task RequestsRunningAcrossReopensReadTheirData()
    {
        var path = _bed.CreateFile("c.img", 1024 * 1024, seed: 9);
        var expected = File.ReadAllBytes(path);
        var node = await _bed.AddAsync($$"""{"driver":"file","node-name":"c","filename":"{{path}}"}""");
        using var stop = new CancellationTokenSource();
        var readers = Enumerable.Range(0, 3).Select(r => Task.Run(async () =>
        {
            BlockNode.MarkInFlightWork();
            var buffer = new byte[65536];
            var reads = 0;
            for (var i = r; !stop.IsCancellationRequested || reads < 50; i++, reads++)
            {
                var offset = i % 16 * 65536;
                await node.ReadAsync(offset, buffer);
                Assert.Equal(expected.AsSpan(offset, 65536).ToArray(), buffer);
            }
        })).ToArray();

        for (var i = 0; i < 50; i++)
        {
            await node.SetReadOnlyAsync(i % 2 == 0);
        }

        stop.Cancel();
        await Task.WhenAll(readers).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.False(node.IsReadOnly);
    }

    private static string? LinkOf(nint fd)
    {
        try
        {
            return new FileInfo($"/proc/self/fd/{fd}").LinkTarget;
        }
        catch (IOException)
        {
            return null;
        }
    }
}
