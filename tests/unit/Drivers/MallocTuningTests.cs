using System.Runtime.InteropServices;
using ExportServer.Block.Native;
using Xunit;

namespace ExportServer.UnitTests.Drivers;

/// <summary>
/// The malloc settings the gluster driver applies for libgfapi's I/O buffers of up to 128 KiB (larger
/// ones, from its own mapped pools, are kept from being mapped afresh by the driver's limit of two
/// large requests in flight, tested against the real volume in GlusterTests).
/// </summary>
public sealed partial class MallocTuningTests
{
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
