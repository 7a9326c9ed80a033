using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace ExportServer.IntegrationTests.Formats;

/// <summary>
/// Generators of images in formats qemu-img only reads (bochs, cloop), written from the format
/// layouts: each mixes allocated, partly allocated and empty areas with random data.
/// </summary>
internal static class ReadOnlyImages
{
    /// <summary>
    /// A Bochs growing redolog: 512-byte header (version 1 or 2), the catalog (-1 = empty extent),
    /// then per used slot a bitmap of <paramref name="bitmapSize"/> bytes and the extent's sectors.
    /// Slots are used in shuffled order; sectors are present at random.
    /// </summary>
    public static void WriteBochs(string path, long diskSize, uint extentSize, bool version1, int seed)
    {
        var rnd = new Random(seed);
        var extents = (int)((diskSize + extentSize - 1) / extentSize);
        var bitmapSize = extentSize / 512 / 8;
        var bitmapSectors = 1 + ((bitmapSize - 1) / 512);
        var catalog = Enumerable.Repeat(0xffffffffu, extents).ToArray();
        var used = Enumerable.Range(0, extents).Where(_ => rnd.Next(3) != 0).OrderBy(_ => rnd.Next()).ToArray();
        for (var slot = 0; slot < used.Length; slot++)
        {
            catalog[used[slot]] = (uint)slot;
        }

        var header = new byte[512];
        Encoding.ASCII.GetBytes("Bochs Virtual HD Image").CopyTo(header, 0);
        Encoding.ASCII.GetBytes("Redolog").CopyTo(header, 32);
        Encoding.ASCII.GetBytes("Growing").CopyTo(header, 48);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(64), version1 ? 0x00010000u : 0x00020000u);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(68), 512);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(72), (uint)extents);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(76), bitmapSize);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(80), extentSize);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(version1 ? 84 : 88), (ulong)diskSize);
        using var f = File.Create(path);
        f.Write(header);
        var raw = new byte[extents * 4];
        for (var i = 0; i < extents; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(i * 4), catalog[i]);
        }

        f.Write(raw);
        foreach (var _ in used)
        {
            var bitmap = new byte[bitmapSectors * 512];
            var mode = rnd.Next(3);
            for (var s = 0; s < extentSize / 512; s++)
            {
                if (mode == 0 || (mode == 1 && rnd.Next(2) == 0) || (mode == 2 && s % 7 < 4))
                {
                    bitmap[s / 8] |= (byte)(1 << (s % 8));
                }
            }

            f.Write(bitmap);
            var data = new byte[extentSize];
            rnd.NextBytes(data);
            f.Write(data);
        }
    }

    /// <summary>
    /// A cloop 2.0 image: the shell preamble padded to 128 bytes, block size and count, n+1 offsets,
    /// then each block deflated (zlib format); blocks of random data, zeroes and repeated bytes.
    /// </summary>
    public static void WriteCloop(string path, uint blockSize, int blocks, int seed)
    {
        var rnd = new Random(seed);
        var preamble = new byte[128];
        Encoding.ASCII.GetBytes("#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n").CopyTo(preamble, 0);
        var compressed = new List<byte[]>();
        for (var b = 0; b < blocks; b++)
        {
            var data = new byte[blockSize];
            switch (b % 3)
            {
                case 0:
                    rnd.NextBytes(data);
                    break;
                case 1:
                    Array.Fill(data, (byte)b);
                    break;
            }

            using var ms = new MemoryStream();
            using (var z = new ZLibStream(ms, CompressionLevel.Optimal, leaveOpen: true))
            {
                z.Write(data);
            }

            compressed.Add(ms.ToArray());
        }

        using var f = File.Create(path);
        f.Write(preamble);
        var counts = new byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(counts, blockSize);
        BinaryPrimitives.WriteUInt32BigEndian(counts.AsSpan(4), (uint)blocks);
        f.Write(counts);
        var offset = 128L + 8 + ((blocks + 1) * 8L);
        var entry = new byte[8];
        foreach (var c in compressed.Append([]))
        {
            BinaryPrimitives.WriteUInt64BigEndian(entry, (ulong)offset);
            f.Write(entry);
            offset += c.Length;
        }

        foreach (var c in compressed)
        {
            f.Write(c);
        }
    }
}
