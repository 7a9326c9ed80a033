using System.Runtime.InteropServices;
using ExportServer.Block.Core;
using Xunit;
using static ExportServer.UnitTests.Drivers.DriverTestBed;

namespace ExportServer.UnitTests.Drivers;

/// <summary>
/// A node offers the file extent holding its bytes (for an export to send them with sendfile) only
/// where the bytes lie unchanged in a regular file's page cache: the file driver without direct
/// I/O and raw over it (shifted by its offset), never a format with its own layout, never pages
/// that would have to come from the disk.
/// </summary>
public sealed partial class FileExtentTests : IAsyncLifetime
{
    private const int MiB = 1024 * 1024;
    private readonly DriverTestBed _bed = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _bed.DisposeAsync();

    [Fact]
    public async Task RawOverACachedFileLeasesTheExtentShiftedByItsOffset()
    {
        var path = _bed.CreateFile("a.img", 2 * MiB, seed: 3);
        var expected = File.ReadAllBytes(path);
        await _bed.AddAsync($$"""{"driver":"file","node-name":"f","filename":{{Json(path)}}}""");
        var raw = await _bed.AddAsync("""{"driver":"raw","node-name":"r","file":"f","offset":65536,"size":1048576}""");
        var root = new BlockRoot(raw);

        var readsBefore = raw.Stats.ReadBytes;
        Assert.True(root.TryLeaseFileExtent(4096, 256 * 1024, out var extent));
        using (extent)
        {
            Assert.Equal(65536 + 4096, extent.Offset);
            Assert.Equal(256 * 1024, extent.Length);
            var bytes = new byte[extent.Length];
            Assert.Equal(extent.Length, RandomAccess.Read(extent.Handle, bytes, extent.Offset));
            Assert.Equal(expected.AsSpan(65536 + 4096, 256 * 1024).ToArray(), bytes);
        }

        // The leased bytes count as read, once, by the node that leased them.
        Assert.Equal(readsBefore + (256 * 1024), raw.Stats.ReadBytes);
        Assert.Throws<BlockException>(() => raw.TryLeaseFileExtent(MiB - 4096, 8192, out _));
    }

    [Fact]
    public async Task PagesNotInTheCacheAreNotLeased()
    {
        var path = _bed.CreateFile("b.img", 2 * MiB, seed: 4);
        var node = await _bed.AddAsync($$"""{"driver":"file","node-name":"f","filename":{{Json(path)}}}""");
        using (var handle = File.OpenHandle(path))
        {
            // Drop the whole file from the page cache (written by the test, so no page is dirty after
            // fsync), then read its first page back: readahead brings in far less than the first MiB.
            RandomAccess.FlushToDisk(handle);
            Assert.Equal(0, PosixFadvise(handle.DangerousGetHandle(), 0, 0, FadvDontNeed));
            Assert.Equal(4096, RandomAccess.Read(handle, new byte[4096], 0));
        }

        Assert.True(node.TryLeaseFileExtent(0, 4096, out var cached));
        cached.Dispose();
        Assert.False(node.TryLeaseFileExtent(MiB, 128 * 1024, out var evicted));
        Assert.Null(evicted.Handle);

        // A range that only starts in cached pages is refused as a whole.
        Assert.False(node.TryLeaseFileExtent(0, MiB + 4096, out _));
    }

    [Fact]
    public async Task DirectIoAndImageFormatsOfferNoExtent()
    {
        var path = _bed.CreateFile("c.img", MiB, seed: 5);
        File.ReadAllBytes(path);
        var direct = await _bed.AddAsync($$$"""{"driver":"file","node-name":"d","filename":{{{Json(path)}}},"cache":{"direct":true}}""");
        Assert.False(direct.TryLeaseFileExtent(0, 65536, out _));

        var qcow2 = _bed.PathOf("q.qcow2");
        Assert.Equal(0, Run("qemu-img", "create", "-q", "-f", "qcow2", qcow2, "1M").Exit);
        File.ReadAllBytes(qcow2);
        var image = await _bed.AddAsync($$$"""{"driver":"qcow2","node-name":"q","file":{"driver":"file","filename":{{{Json(qcow2)}}}}}""");
        Assert.False(image.TryLeaseFileExtent(0, 65536, out _));
    }

    [Fact]
    public async Task ALeaseKeepsTheDescriptorOpenAfterTheNodeIsClosed()
    {
        var path = _bed.CreateFile("e.img", MiB, seed: 6);
        var expected = File.ReadAllBytes(path);
        var node = await _bed.AddAsync($$"""{"driver":"file","node-name":"e","filename":{{Json(path)}}}""");
        Assert.True(node.TryLeaseFileExtent(65536, 65536, out var extent));
        await _bed.Graph.CloseAllAsync();

        using (extent)
        {
            var bytes = new byte[65536];
            Assert.Equal(65536, RandomAccess.Read(extent.Handle, bytes, extent.Offset));
            Assert.Equal(expected.AsSpan(65536, 65536).ToArray(), bytes);
        }

        Assert.True(extent.Handle.IsClosed);
    }

    private const int FadvDontNeed = 4;

    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int PosixFadvise(nint fd, long offset, long length, int advice);
}
