using System.Runtime.InteropServices;
using ExportServer.Block.Native;
using ExportServer.Block.Protocols.Gluster;
using Xunit;

namespace ExportServer.UnitTests.Drivers;

/// <summary>
/// How the gluster driver keeps libgfapi's I/O buffers off freshly mapped memory: reads above
/// 128 KiB up to 1 MiB go as pieces of 128 KiB (writes above it go whole, two at a time), and malloc
/// serves allocations up to 2 MiB from the heap. Both are tested against the real volume (GlusterTests).
/// </summary>
public sealed partial class GlusterPiecesTests
{
    [Theory]
    [InlineData(512, 1)]
    [InlineData(128 * 1024, 1)]
    [InlineData((128 * 1024) + 1, 2)]
    [InlineData(256 * 1024, 2)]
    [InlineData(300 * 1024, 3)]
    [InlineData(1024 * 1024, 8)]
    [InlineData((1024 * 1024) + 512, 1)]
    [InlineData(32 * 1024 * 1024, 1)]
    public void ReadsAbove128KiBUpTo1MiBGoInPiecesOf128KiB(int length, int pieces) =>
        Assert.Equal(pieces, GlusterNode.PieceCount(length));

    /// <summary>
    /// After the tuning a 1.5 MiB allocation comes from the heap: its usable size is the request
    /// rounded to 16 bytes; a chunk mapped on its own would be rounded up to whole pages (4 KiB more).
    /// </summary>
    [Fact]
    public void AfterTheTuningMallocServesAllocationsUpTo2MiBFromTheHeap()
    {
        Assert.True(MallocTuning.KeepIoBuffers());
        Assert.True(MallocTuning.KeepIoBuffers());
        const int Size = 1536 * 1024;
        nuint usable = 0;
        var thread = new Thread(() =>
        {
            var p = malloc(Size);
            Assert.NotEqual(0, p);
            usable = malloc_usable_size(p);
            free(p);
        });
        thread.Start();
        thread.Join();
        Assert.InRange(usable, (nuint)Size, (nuint)(Size + 64));
    }

    [LibraryImport("libc")]
    private static partial nint malloc(nuint size);

    [LibraryImport("libc")]
    private static partial nuint malloc_usable_size(nint p);

    [LibraryImport("libc")]
    private static partial void free(nint p);
}
