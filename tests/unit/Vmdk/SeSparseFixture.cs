using System.Buffers.Binary;

namespace ExportServer.TestFixtures;

/// <summary>
/// seSparse extents built byte by byte from the documented layout (qemu-img cannot make them), and
/// descriptors naming them. Shared by the unit and the integration tests.
/// </summary>
internal static class SeSparseFixture
{
    public const int Sector = 512;
    public const int GrainBytes = 4096;
    public const long TableSpan = 4096L * GrainBytes;

    /// <summary>What grain <paramref name="grain"/> of the grains area holds in a populated extent.</summary>
    public static byte Pattern(long grain) => (byte)((grain % 251) + 1);

    /// <summary>seSparse allocated entry: kind 3 in the top nibble, the index's low 12 bits in bits 48-59, the rest in bits 0-47.</summary>
    public static ulong Allocated(long index) => 0x3000000000000000UL | ((ulong)(index & 0xfff) << 48) | ((ulong)index >> 12);

    /// <summary>Where an extent built by <see cref="Build"/> keeps its areas, in bytes.</summary>
    public sealed record Layout(long Directory, long Tables, long Grains, int TableSlots, long GrainSlots)
    {
        public long Table(int index, int entry) => Tables + (index * 32768L) + (entry * 8L);

        public long Grain(long index) => Grains + (index * GrainBytes);
    }

    public static Layout LayoutOf(long capacity, int? tableSlots = null, long? grainSlots = null)
    {
        var tablesNeeded = (int)((capacity + TableSpan - 1) / TableSpan);
        var directorySectors = (tablesNeeded + 63) / 64;
        var tables = 2L + directorySectors;
        var slots = tableSlots ?? tablesNeeded;
        return new Layout(2 * Sector, tables * Sector, (tables + (slots * 64L)) * Sector, slots, grainSlots ?? (capacity / GrainBytes));
    }

    public static void Put(FileStream f, long offset, ReadOnlySpan<byte> bytes)
    {
        f.Seek(offset, SeekOrigin.Begin);
        f.Write(bytes);
    }

    public static void Put64(FileStream f, long offset, ulong value)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        Put(f, offset, b);
    }

    public static ulong Get64(string path, long offset)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var b = new byte[8];
        f.Seek(offset, SeekOrigin.Begin);
        f.ReadExactly(b);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    private static void PutGrain(FileStream f, long offset, long grain) => Put(f, offset, Enumerable.Repeat(Pattern(grain), GrainBytes).ToArray());

    /// <summary>
    /// Layout in sectors: const header 0, volatile header 1 (free_gt_number 0), grain directory from
    /// 2, grain tables after it (64 sectors each), grains after them (8 sectors each). Populated
    /// (at least 64 MiB): tables out of order, the third 16 MiB unallocated, a grain index above
    /// 4096, zero and unmapped grains; otherwise no table is allocated and the file ends at the grains.
    /// </summary>
    public static Layout Build(string path, long capacity, bool populated = true, int? tableSlots = null, long? grainSlots = null)
    {
        var l = LayoutOf(capacity, tableSlots, grainSlots);
        using var f = new FileStream(path, FileMode.Create);
        Put64(f, 0, 0xcafebabe);
        Put64(f, 8, 0x0000000200000001);
        Put64(f, 16, (ulong)(capacity / Sector));
        Put64(f, 24, 8);
        Put64(f, 32, 64);
        Put64(f, 80, 1);
        Put64(f, 88, 1);
        Put64(f, 128, (ulong)(l.Directory / Sector));
        Put64(f, 136, (ulong)((l.Tables - l.Directory) / Sector));
        Put64(f, 144, (ulong)(l.Tables / Sector));
        Put64(f, 152, (ulong)l.TableSlots * 64);
        Put64(f, 192, (ulong)(l.Grains / Sector));
        Put64(f, 200, (ulong)l.GrainSlots * 8);
        Put64(f, 512, 0xcafecafe);
        f.SetLength(l.Grains);
        if (!populated)
        {
            return l;
        }

        Put64(f, l.Directory, 0x1000000000000002);
        Put64(f, l.Directory + 8, 0x1000000000000000);
        Put64(f, l.Directory + 24, 0x1000000000000001);
        Put64(f, l.Table(2, 0), Allocated(5000));
        Put64(f, l.Table(2, 1), 0x2000000000000000); // zero
        Put64(f, l.Table(2, 2), 0x1000000000000000); // unmapped
        Put64(f, l.Table(2, 3), Allocated(1));
        Put64(f, l.Table(0, 0), Allocated(7));
        Put64(f, l.Table(1, 4095), Allocated(4096));
        foreach (var g in new[] { 1L, 7, 4096, 5000 })
        {
            PutGrain(f, l.Grain(g), g);
        }

        return l;
    }

    /// <summary>A descriptor naming one SESPARSE extent, over a parent when <paramref name="parentHint"/> is given.</summary>
    public static string Descriptor(long capacity, string extentFile, string? parentHint = null, string parentCid = "ffffffff") =>
        $"# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID={parentCid}\ncreateType=\"seSparse\"\n" +
        (parentHint is null ? string.Empty : $"parentFileNameHint=\"{parentHint}\"\n") +
        $"\n# Extent description\nRW {capacity / Sector} SESPARSE \"{extentFile}\"\n";
}
