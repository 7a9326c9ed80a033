using ExportServer.Block.Core;
using ExportServer.Block.Protocols.File;
using Xunit;
using static ExportServer.UnitTests.Drivers.DriverTestBed;

namespace ExportServer.UnitTests.Drivers;

public sealed class FileDriverTests : IAsyncLifetime
{
    private const int MiB = 1024 * 1024;
    private readonly DriverTestBed _bed = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _bed.DisposeAsync();

    private Task<BlockNode> OpenFileAsync(string path, string extra = "") =>
        _bed.AddAsync($$"""{"driver":"file","node-name":"f","filename":{{Json(path)}}{{extra}}}""");

    [Fact]
    public async Task WritesReachTheFileAndReadBack()
    {
        var path = _bed.CreateFile("a.img", MiB);
        var node = await OpenFileAsync(path);
        Assert.Equal(MiB, node.Length);
        Assert.Equal(path, node.FileName);
        Assert.Equal("file", node.DriverName);

        var payload = new byte[10_000];
        new Random(7).NextBytes(payload);
        await node.WriteAsync(12_345, payload);
        await node.FlushAsync();

        var back = new byte[payload.Length];
        await node.ReadAsync(12_345, back);
        Assert.Equal(payload, back);
        Assert.Equal(payload, File.ReadAllBytes(path).AsSpan(12_345, payload.Length).ToArray());
    }

    [Fact]
    public async Task DirectIoBouncesUnalignedOffsetsAndBuffers()
    {
        var path = _bed.CreateFile("d.img", MiB);
        var node = await OpenFileAsync(path, ""","cache":{"direct":true}""");
        Assert.InRange(node.Limits.RequestAlignment, 512, 4096);
        Assert.Equal(4096, node.Limits.MemoryAlignment);

        // A slice one byte into an array is never 4096-aligned, so both paths bounce.
        var array = new byte[8193];
        new Random(3).NextBytes(array);
        var unalignedMemory = array.AsMemory(1, 8192);
        await node.WriteAsync(8192, unalignedMemory);
        await node.WriteAsync(300, array.AsMemory(0, 700));

        var expected = File.ReadAllBytes(path);
        Assert.Equal(unalignedMemory.ToArray(), expected.AsSpan(8192, 8192).ToArray());
        Assert.Equal(array.AsSpan(0, 700).ToArray(), expected.AsSpan(300, 700).ToArray());

        var back = new byte[8193];
        await node.ReadAsync(8192, back.AsMemory(1, 8192));
        Assert.Equal(unalignedMemory.ToArray(), back.AsSpan(1).ToArray());
        var odd = new byte[999];
        await node.ReadAsync(1001, odd);
        Assert.Equal(expected.AsSpan(1001, 999).ToArray(), odd);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ManyConcurrentRequestsAllLand(bool direct)
    {
        var path = _bed.CreateSparseFile("c.img", 4 * MiB);
        var node = await OpenFileAsync(path, direct ? ""","cache":{"direct":true}""" : "");
        var writes = Enumerable.Range(0, 100).Select(i =>
            node.WriteAsync(i * 40960L, Enumerable.Repeat((byte)(i + 1), 40960).ToArray()).AsTask());
        await Task.WhenAll(writes);

        var reads = Enumerable.Range(0, 100).Select(async i =>
        {
            var back = new byte[40960];
            await node.ReadAsync(i * 40960L, back);
            return back.All(b => b == (byte)(i + 1));
        });
        Assert.All(await Task.WhenAll(reads), Assert.True);
    }

    [Fact]
    public async Task DirectIoReadsAFileWhoseSizeIsNotAligned()
    {
        var path = _bed.CreateFile("short.img", 1000, seed: 5);
        var node = await OpenFileAsync(path, ""","cache":{"direct":true},"read-only":true""");
        Assert.Equal(1000, node.Length);

        var back = new byte[1000];
        await node.ReadAsync(0, back);
        Assert.Equal(File.ReadAllBytes(path), back);
    }

    [Fact]
    public async Task WriteZeroesWithUnmapPunchesAHole()
    {
        var path = _bed.CreateFile("z.img", 4 * MiB);
        var node = await OpenFileAsync(path, ""","discard":"unmap" """);
        var before = AllocatedBytes(path);

        await node.WriteZeroesAsync(MiB, 2 * MiB, ZeroFlags.MayUnmap);

        Assert.True(AllocatedBytes(path) <= before - 2 * MiB, $"allocation {before} -> {AllocatedBytes(path)}");
        Assert.All(File.ReadAllBytes(path).AsSpan(MiB, 2 * MiB).ToArray(), b => Assert.Equal(0, b));
        var status = await node.GetBlockStatusAsync(MiB, 3 * MiB);
        Assert.Equal(new BlockStatus(2 * MiB, BlockStatusFlags.Zero | BlockStatusFlags.Allocated), status);
        Assert.Equal(4 * MiB, new FileInfo(path).Length);
    }

    [Fact]
    public async Task WriteZeroesWithoutDiscardUnmapZeroesInPlace()
    {
        var path = _bed.CreateFile("zr.img", 4 * MiB);
        var node = await OpenFileAsync(path);
        var before = AllocatedBytes(path);

        await node.WriteZeroesAsync(MiB, MiB + 17, ZeroFlags.MayUnmap);

        var data = File.ReadAllBytes(path);
        Assert.All(data.AsSpan(MiB, MiB + 17).ToArray(), b => Assert.Equal(0, b));
        Assert.NotEqual(0, data[2 * MiB + 17] | data[2 * MiB + 18] | data[2 * MiB + 19]);
        Assert.Equal(before, AllocatedBytes(path));
    }

    [Fact]
    public async Task DiscardFreesSpaceOnlyWithDiscardUnmap()
    {
        var ignored = _bed.CreateFile("i.img", 2 * MiB);
        var node = await OpenFileAsync(ignored);
        var before = AllocatedBytes(ignored);
        await node.DiscardAsync(0, MiB);
        Assert.Equal(before, AllocatedBytes(ignored));

        var unmapped = _bed.CreateFile("u.img", 2 * MiB);
        var second = await _bed.AddAsync($$"""{"driver":"file","node-name":"g","filename":{{Json(unmapped)}},"discard":"unmap"}""");
        before = AllocatedBytes(unmapped);
        await second.DiscardAsync(0, MiB);
        Assert.True(AllocatedBytes(unmapped) <= before - MiB);
    }

    [Fact]
    public async Task BlockStatusOfASparseFileFollowsItsHoles()
    {
        var path = _bed.CreateSparseFile("s.img", 8 * MiB);
        var node = await OpenFileAsync(path);
        await node.WriteAsync(MiB, new byte[MiB].Select(_ => (byte)1).ToArray());
        await node.WriteAsync(5 * MiB, Enumerable.Repeat((byte)2, 4096).ToArray());

        var map = new List<(long Offset, long Length, BlockStatusFlags Flags)>();
        for (long offset = 0; offset < node.Length;)
        {
            var s = await node.GetBlockStatusAsync(offset, node.Length - offset);
            if (map.Count > 0 && map[^1].Flags == s.Flags)
            {
                map[^1] = (map[^1].Offset, map[^1].Length + s.Length, s.Flags);
            }
            else
            {
                map.Add((offset, s.Length, s.Flags));
            }

            offset += s.Length;
        }

        const BlockStatusFlags hole = BlockStatusFlags.Zero | BlockStatusFlags.Allocated;
        const BlockStatusFlags data = BlockStatusFlags.Data | BlockStatusFlags.Allocated;
        Assert.Equal(
            new (long, long, BlockStatusFlags)[]
            {
                (0, MiB, hole), (MiB, MiB, data), (2 * MiB, 3 * MiB, hole), (5 * MiB, 4096, data), (5 * MiB + 4096, 3 * MiB - 4096, hole),
            },
            map);
    }

    [Fact]
    public async Task AHolePunchedInsideAKnownDataRunIsSeen()
    {
        const BlockStatusFlags hole = BlockStatusFlags.Zero | BlockStatusFlags.Allocated;
        const BlockStatusFlags data = BlockStatusFlags.Data | BlockStatusFlags.Allocated;
        var path = _bed.CreateSparseFile("p.img", 8 * MiB);
        var node = await OpenFileAsync(path, ""","discard":"unmap" """);
        await node.WriteAsync(MiB, Enumerable.Repeat((byte)3, 4 * MiB).ToArray());

        // The first query finds the run 1-5 MiB; the second is answered from what the first found.
        Assert.Equal(new BlockStatus(MiB, hole), await node.GetBlockStatusAsync(0, 8 * MiB));
        Assert.Equal(new BlockStatus(2 * MiB, data), await node.GetBlockStatusAsync(3 * MiB, 5 * MiB));

        await node.DiscardAsync(2 * MiB, MiB);
        Assert.Equal(new BlockStatus(MiB, data), await node.GetBlockStatusAsync(MiB, 7 * MiB));
        Assert.Equal(new BlockStatus(MiB, hole), await node.GetBlockStatusAsync(2 * MiB, 6 * MiB));

        await node.WriteZeroesAsync(3 * MiB + 4096, 4096, ZeroFlags.MayUnmap);
        Assert.Equal(new BlockStatus(4096, data), await node.GetBlockStatusAsync(3 * MiB, 5 * MiB));

        await node.TruncateAsync(3 * MiB + 4096);
        await node.TruncateAsync(8 * MiB);
        Assert.Equal(new BlockStatus(5 * MiB - 4096, hole), await node.GetBlockStatusAsync(3 * MiB + 4096, 5 * MiB - 4096));
    }

    [Fact]
    public async Task KnownHolesLastUntilTheNextWriteThroughTheNode()
    {
        const BlockStatusFlags hole = BlockStatusFlags.Zero | BlockStatusFlags.Allocated;
        const BlockStatusFlags data = BlockStatusFlags.Data | BlockStatusFlags.Allocated;
        var path = _bed.CreateSparseFile("h.img", 8 * MiB);
        var node = await OpenFileAsync(path);
        Assert.Equal(new BlockStatus(8 * MiB, hole), await node.GetBlockStatusAsync(0, 8 * MiB));

        // A writer that ignores the image locks goes unseen: the answer comes from the known hole.
        WriteBehindTheLocks(path, 2 * MiB);
        Assert.Equal(new BlockStatus(8 * MiB, hole), await node.GetBlockStatusAsync(0, 8 * MiB));

        // A write through the node, anywhere, ends what was known.
        await node.WriteAsync(6 * MiB, Enumerable.Repeat((byte)4, 4096).ToArray());
        Assert.Equal(new BlockStatus(2 * MiB, hole), await node.GetBlockStatusAsync(0, 8 * MiB));
        Assert.Equal(new BlockStatus(4096, data), await node.GetBlockStatusAsync(2 * MiB, 6 * MiB));
        Assert.Equal(new BlockStatus(4 * MiB - 4096, hole), await node.GetBlockStatusAsync(2 * MiB + 4096, 6 * MiB - 4096));
        Assert.Equal(new BlockStatus(4096, data), await node.GetBlockStatusAsync(6 * MiB, 2 * MiB));

        // So do a zeroing and a resize.
        WriteBehindTheLocks(path, 4 * MiB);
        await node.WriteZeroesAsync(7 * MiB, 4096, ZeroFlags.None);
        Assert.Equal(new BlockStatus(4096, data), await node.GetBlockStatusAsync(4 * MiB, 4 * MiB));
        WriteBehindTheLocks(path, 5 * MiB);
        await node.TruncateAsync(9 * MiB);
        Assert.Equal(new BlockStatus(4096, data), await node.GetBlockStatusAsync(5 * MiB, 4 * MiB));
    }

    [Theory]
    [InlineData(""","read-only":true,"force-share":true""")]
    [InlineData(""","locking":"off" """)]
    public async Task ANodeThatLetsOthersWriteKeepsNoHoles(string extra)
    {
        const BlockStatusFlags hole = BlockStatusFlags.Zero | BlockStatusFlags.Allocated;
        const BlockStatusFlags data = BlockStatusFlags.Data | BlockStatusFlags.Allocated;
        var path = _bed.CreateSparseFile("o.img", 8 * MiB);
        var node = await OpenFileAsync(path, extra);
        Assert.Equal(new BlockStatus(8 * MiB, hole), await node.GetBlockStatusAsync(0, 8 * MiB));

        WriteBehindTheLocks(path, 2 * MiB);
        Assert.Equal(new BlockStatus(2 * MiB, hole), await node.GetBlockStatusAsync(0, 8 * MiB));
        Assert.Equal(new BlockStatus(4096, data), await node.GetBlockStatusAsync(2 * MiB, 6 * MiB));
    }

    /// <summary>4 KiB of data at <paramref name="offset"/> through a descriptor of its own that takes no image lock.</summary>
    private static void WriteBehindTheLocks(string path, long offset)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
        f.Position = offset;
        f.Write(Enumerable.Repeat((byte)9, 4096).ToArray());
    }

    [Fact]
    public async Task WriteBehindIsArmedByTheFirstFlushOrFuaWrite()
    {
        var flushed = (FileNode)await OpenFileAsync(_bed.CreateFile("wb1.img", MiB));
        await flushed.WriteAsync(0, new byte[65536]);
        Assert.False(flushed.WritesBehind);
        await flushed.FlushAsync();
        Assert.True(flushed.WritesBehind);

        var fua = (FileNode)await _bed.AddAsync($$"""{"driver":"file","node-name":"g","filename":{{Json(_bed.CreateFile("wb2.img", MiB))}}}""");
        await fua.WriteAsync(0, new byte[65536], WriteFlags.Fua);
        Assert.True(fua.WritesBehind);
    }

    [Fact]
    public async Task AFlushedStreamExpectedAboveArmsWriteBehindInTheFileBelow()
    {
        var file = (FileNode)await OpenFileAsync(_bed.CreateFile("wb3.img", MiB));
        var raw = await _bed.AddAsync("""{"driver":"raw","node-name":"r","file":"f"}""");
        Assert.False(file.WritesBehind);
        raw.ExpectFlushedStream();
        Assert.True(file.WritesBehind);
    }

    [Fact]
    public async Task TruncateResizesTheFile()
    {
        var path = _bed.CreateFile("t.img", MiB);
        var node = await OpenFileAsync(path);
        Assert.True(node.CanTruncate);

        await node.TruncateAsync(3 * MiB);
        Assert.Equal(3 * MiB, node.Length);
        Assert.Equal(3 * MiB, new FileInfo(path).Length);
        var tail = new byte[4096];
        await node.ReadAsync(3 * MiB - 4096, tail);
        Assert.All(tail, b => Assert.Equal(0, b));

        await node.TruncateAsync(4096);
        Assert.Equal(4096, new FileInfo(path).Length);
        var e = await Assert.ThrowsAsync<BlockException>(() => node.ReadAsync(4096, new byte[1]).AsTask());
        Assert.Equal(Errno.EINVAL, e.Errno);
    }

    [Fact]
    public async Task ReadOnlyNodeRefusesWrites()
    {
        var path = _bed.CreateFile("r.img", 4096);
        var node = await OpenFileAsync(path, ""","read-only":true""");
        Assert.True(node.IsReadOnly);
        var e = await Assert.ThrowsAsync<BlockException>(() => node.WriteAsync(0, new byte[512]).AsTask());
        Assert.Equal(Errno.EPERM, e.Errno);
    }

    [Fact]
    public async Task MissingFileIsReportedInQemuWords()
    {
        var path = _bed.PathOf("nonexist");
        var e = await _bed.AddFailsAsync($$"""{"driver":"file","node-name":"f","filename":{{Json(path)}}}""");
        Assert.Equal(Errno.ENOENT, e.Errno);
        Assert.Equal($"Could not open '{path}': No such file or directory", e.Message);
        Assert.Empty(_bed.Graph.Nodes);
    }

    [Theory]
    [InlineData(""","aio":"foo" """, "Parameter 'aio' does not accept value 'foo'")]
    [InlineData(""","locking":"foo" """, "Parameter 'locking' does not accept value 'foo'")]
    [InlineData(""","drop-cache":"x" """, "Parameter 'drop-cache' expects 'on' or 'off'")]
    [InlineData(""","aio":"native" """, "aio=native was specified, but it requires cache.direct=on, which was not specified.")]
    [InlineData(""","bogus":1""", "Parameter 'bogus' is unexpected")]
    public async Task BadOptionsAreReportedInQemuWords(string extra, string message)
    {
        var path = _bed.CreateFile("o.img", 4096);
        var e = await Assert.ThrowsAsync<BlockException>(() => OpenFileAsync(path, extra));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public async Task AcceptedTuningOptionsOpen()
    {
        var path = _bed.CreateFile("tune.img", 4096);
        var node = await OpenFileAsync(path,
            ""","aio":"native","cache":{"direct":true,"no-flush":true},"aio-max-batch":"16","locking":"auto","drop-cache":"on","x-check-cache-dropped":"off" """);
        await node.FlushAsync();
        Assert.Equal(4096, node.Length);
    }

    [Fact]
    public async Task MissingFilenameAndWrongFileTypesAreRefused()
    {
        var e = await _bed.AddFailsAsync("""{"driver":"file","node-name":"f"}""");
        Assert.Equal("Parameter 'filename' is missing", e.Message);

        e = await _bed.AddFailsAsync($$"""{"driver":"file","node-name":"f","filename":{{Json(_bed.Directory)}}}""");
        Assert.Equal($"Could not open '{_bed.Directory}': Is a directory", e.Message);

        e = await _bed.AddFailsAsync("""{"driver":"file","node-name":"f","filename":"/dev/null"}""");
        Assert.Equal("'file' driver requires '/dev/null' to be a regular file", e.Message);

        var path = _bed.CreateFile("h.img", 4096);
        e = await _bed.AddFailsAsync($$"""{"driver":"host_device","node-name":"f","filename":{{Json(path)}}}""");
        Assert.Equal($"'host_device' driver requires '{path}' to be either a character or block device", e.Message);
    }
}
