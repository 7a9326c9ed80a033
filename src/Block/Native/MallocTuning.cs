using System.Runtime.InteropServices;

namespace ExportServer.Block.Native;

/// <summary>
/// glibc malloc settings for native libraries that allocate an I/O buffer per request (libgfapi).
/// By default glibc maps every allocation above 128 KiB on its own until the first such one is freed,
/// and gives the top of a thread's heap back to the system as soon as more than twice that lies free
/// there; a library that mallocs and frees a 128 KiB buffer per request on several threads then faults
/// its pages in afresh over and over (tens of thousands of page faults per GiB copied, each dearer on
/// a virtual machine than the copy itself). Allocations up to 2 MiB come from the heap, and a heap keeps
/// up to 32 MiB free at its top (each of glibc's arenas, up to eight per core): about what a burst of
/// requests in flight holds. That memory stays with the process once the burst is over.
/// </summary>
internal static partial class MallocTuning
{
    private const int M_TRIM_THRESHOLD = -1;
    private const int M_MMAP_THRESHOLD = -3;

    /// <summary>Allocations up to this size come from the heap.</summary>
    public const int MmapThreshold = 2 * 1024 * 1024;

    /// <summary>Free memory a heap keeps at its top before giving it back.</summary>
    public const int TrimThreshold = 32 * 1024 * 1024;

    private static readonly Lazy<bool> s_applied = new(
        () => mallopt(M_MMAP_THRESHOLD, MmapThreshold) == 1 && mallopt(M_TRIM_THRESHOLD, TrimThreshold) == 1);

    /// <summary>Applies the settings once per process; later calls only repeat whether glibc took them.</summary>
    public static bool KeepIoBuffers() => s_applied.Value;

    [LibraryImport("libc")]
    private static partial int mallopt(int param, int value);
}
