using System.Buffers.Binary;

namespace ExportServer.Block.Formats.Qed;

/// <summary>An L1 or L2 table: little-endian 64-bit offsets, one per entry. Entries change with <see cref="Volatile"/> so readers see whole values.</summary>
internal sealed class QedTable
{
    /// <summary>Entries written back together: one sector.</summary>
    public const int EntriesPerSector = 512 / 8;

    private readonly ulong[] _entries;

    public QedTable(int count) => _entries = new ulong[count];

    public int Count => _entries.Length;

    public ulong this[int index]
    {
        get => Volatile.Read(ref _entries[index]);
        set => Volatile.Write(ref _entries[index], value);
    }

    public static QedTable Read(ReadOnlySpan<byte> bytes, int count)
    {
        var table = new QedTable(count);
        for (var i = 0; i < count; i++)
        {
            table._entries[i] = BinaryPrimitives.ReadUInt64LittleEndian(bytes[(i * 8)..]);
        }

        return table;
    }

    /// <summary>Encodes <paramref name="count"/> entries from <paramref name="first"/>.</summary>
    public void Encode(int first, int count, Span<byte> into)
    {
        for (var i = 0; i < count; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(into[(i * 8)..], this[first + i]);
        }
    }
}
