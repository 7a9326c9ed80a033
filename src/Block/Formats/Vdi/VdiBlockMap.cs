using System.Buffers.Binary;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vdi;

/// <summary>
/// The block map: for each guest block the index of its data block (little-endian), or
/// unallocated / discarded. Kept in memory whole; its size is bounded by the file that holds it.
/// </summary>
internal sealed class VdiBlockMap
{
    private readonly uint[] _entries;

    private VdiBlockMap(uint[] entries) => _entries = entries;

    public int Count => _entries.Length;

    public uint this[int index] => Volatile.Read(ref _entries[index]);

    public static VdiBlockMap Read(ReadOnlySpan<byte> bytes, int count)
    {
        var entries = new uint[count];
        for (var i = 0; i < count; i++)
        {
            entries[i] = BinaryPrimitives.ReadUInt32LittleEndian(bytes[(i * 4)..]);
        }

        return new VdiBlockMap(entries);
    }

    /// <summary>
    /// Checks that every allocated entry names its own data block (one of <paramref name="dataBlocks"/>
    /// that exist in the file), so that no write through one guest block shows through another.
    /// </summary>
    public void Validate(long dataBlocks)
    {
        var owner = new int[_entries.Length];
        Array.Fill(owner, -1);
        for (var i = 0; i < _entries.Length; i++)
        {
            var e = _entries[i];
            if (!VdiFormat.IsAllocated(e))
            {
                continue;
            }

            if (e >= _entries.Length || e >= dataBlocks)
            {
                throw BlockException.Invalid($"vdi: block map entry {i} points at data block {e}, beyond the end of the file");
            }

            if (owner[e] >= 0)
            {
                throw BlockException.Invalid($"vdi: block map entries {owner[e]} and {i} both point at data block {e}");
            }

            owner[e] = i;
        }
    }

    public void Set(int index, uint value) => Volatile.Write(ref _entries[index], value);

    /// <summary>Encodes <paramref name="count"/> entries from <paramref name="first"/> as stored.</summary>
    public void Encode(int first, int count, Span<byte> into)
    {
        for (var i = 0; i < count; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(into[(i * 4)..], this[first + i]);
        }
    }
}
