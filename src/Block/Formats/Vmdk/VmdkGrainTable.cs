using System.Buffers.Binary;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// One grain table as cached: its entries (32-bit sector numbers, or seSparse's 64-bit entries,
/// both held as ulong), where it lives, which directory entry names it, and whether it has changes
/// not yet written.
/// </summary>
internal sealed class VmdkGrainTable(ulong[] entries, int entrySize, long directoryIndex, long offset)
{
    public ulong[] Entries { get; } = entries;

    public int EntrySize { get; } = entrySize;

    public long DirectoryIndex { get; } = directoryIndex;

    public long Offset { get; } = offset;

    public bool Dirty { get; set; }

    public static VmdkGrainTable Read(ReadOnlySpan<byte> b, int entrySize, long directoryIndex, long offset)
    {
        var entries = new ulong[b.Length / entrySize];
        for (var i = 0; i < entries.Length; i++)
        {
            entries[i] = entrySize == 8
                ? BinaryPrimitives.ReadUInt64LittleEndian(b[(i * 8)..])
                : BinaryPrimitives.ReadUInt32LittleEndian(b[(i * 4)..]);
        }

        return new VmdkGrainTable(entries, entrySize, directoryIndex, offset);
    }

    public void Write(Span<byte> b)
    {
        for (var i = 0; i < Entries.Length; i++)
        {
            if (EntrySize == 8)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(b[(i * 8)..], Entries[i]);
            }
            else
            {
                BinaryPrimitives.WriteUInt32LittleEndian(b[(i * 4)..], (uint)Entries[i]);
            }
        }
    }
}
