using System.Buffers.Binary;

namespace ExportServer.Nbd.Protocol;

/// <summary>
/// Reply headers and chunk payloads on the wire (big-endian). Simple reply: magic u32, error u32,
/// cookie u64. Structured chunk: magic u32, flags u16, type u16, cookie u64, length u32. Extended
/// chunk: magic u32, flags u16, type u16, cookie u64, offset u64, length u64.
/// </summary>
internal static class NbdReplyCodec
{
    /// <summary>OFFSET_HOLE payload: offset u64, hole size u32 (also with extended headers).</summary>
    public const int OffsetHolePayloadSize = 12;

    /// <summary>OFFSET_DATA payload prefix before the data: offset u64.</summary>
    public const int OffsetDataPrefixSize = 8;

    public static int ChunkHeaderSize(bool extended) =>
        extended ? NbdConstants.ExtendedReplyHeaderSize : NbdConstants.StructuredReplyHeaderSize;

    public static int WriteSimple(Span<byte> destination, uint error, ulong cookie)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, NbdConstants.SimpleReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], error);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], cookie);
        return NbdConstants.SimpleReplySize;
    }

    /// <summary>
    /// Writes a chunk header. <paramref name="offset"/> (the request's offset) is carried only by extended
    /// headers; a compact header requires <paramref name="length"/> to fit 32 bits.
    /// </summary>
    public static int WriteChunkHeader(Span<byte> destination, bool extended, ushort flags, ushort type, ulong cookie, ulong offset, ulong length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, extended ? NbdConstants.ExtendedReplyMagic : NbdConstants.StructuredReplyMagic);
        BinaryPrimitives.WriteUInt16BigEndian(destination[4..], flags);
        BinaryPrimitives.WriteUInt16BigEndian(destination[6..], type);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], cookie);
        if (extended)
        {
            BinaryPrimitives.WriteUInt64BigEndian(destination[16..], offset);
            BinaryPrimitives.WriteUInt64BigEndian(destination[24..], length);
            return NbdConstants.ExtendedReplyHeaderSize;
        }

        BinaryPrimitives.WriteUInt32BigEndian(destination[16..], checked((uint)length));
        return NbdConstants.StructuredReplyHeaderSize;
    }

    /// <summary>Decodes a simple reply, structured chunk or extended chunk header by its magic.</summary>
    public static NbdParseStatus TryParseHeader(ReadOnlySpan<byte> source, out NbdReplyHeader header, out int size)
    {
        header = default;
        size = 0;
        if (source.Length < 4)
        {
            return NbdParseStatus.Incomplete;
        }

        var magic = BinaryPrimitives.ReadUInt32BigEndian(source);
        size = magic switch
        {
            NbdConstants.SimpleReplyMagic => NbdConstants.SimpleReplySize,
            NbdConstants.StructuredReplyMagic => NbdConstants.StructuredReplyHeaderSize,
            NbdConstants.ExtendedReplyMagic => NbdConstants.ExtendedReplyHeaderSize,
            _ => 0,
        };
        if (size == 0)
        {
            return NbdParseStatus.BadMagic;
        }

        if (source.Length < size)
        {
            size = 0;
            return NbdParseStatus.Incomplete;
        }

        var cookie = BinaryPrimitives.ReadUInt64BigEndian(source[8..]);
        header = magic switch
        {
            NbdConstants.SimpleReplyMagic => new NbdReplyHeader(true, BinaryPrimitives.ReadUInt32BigEndian(source[4..]), 0, 0, cookie, 0, 0),
            NbdConstants.StructuredReplyMagic => new NbdReplyHeader(
                false, 0, BinaryPrimitives.ReadUInt16BigEndian(source[4..]), BinaryPrimitives.ReadUInt16BigEndian(source[6..]),
                cookie, 0, BinaryPrimitives.ReadUInt32BigEndian(source[16..])),
            _ => new NbdReplyHeader(
                false, 0, BinaryPrimitives.ReadUInt16BigEndian(source[4..]), BinaryPrimitives.ReadUInt16BigEndian(source[6..]),
                cookie, BinaryPrimitives.ReadUInt64BigEndian(source[16..]), BinaryPrimitives.ReadUInt64BigEndian(source[24..])),
        };
        return NbdParseStatus.Ok;
    }

    public static int WriteOffsetDataPrefix(Span<byte> destination, ulong offset)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, offset);
        return OffsetDataPrefixSize;
    }

    public static int WriteOffsetHole(Span<byte> destination, ulong offset, uint size)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, offset);
        BinaryPrimitives.WriteUInt32BigEndian(destination[8..], size);
        return OffsetHolePayloadSize;
    }

    public static void ReadOffsetHole(ReadOnlySpan<byte> source, out ulong offset, out uint size)
    {
        offset = BinaryPrimitives.ReadUInt64BigEndian(source);
        size = BinaryPrimitives.ReadUInt32BigEndian(source[8..]);
    }

    /// <summary>Reads an ERROR / ERROR_OFFSET payload; false when the message length overruns the payload.</summary>
    public static bool TryParseError(ReadOnlySpan<byte> source, out uint error, out ReadOnlySpan<byte> message)
    {
        error = 0;
        message = default;
        if (source.Length < 6)
        {
            return false;
        }

        error = BinaryPrimitives.ReadUInt32BigEndian(source);
        var length = BinaryPrimitives.ReadUInt16BigEndian(source[4..]);
        if (length > source.Length - 6)
        {
            return false;
        }

        message = source.Slice(6, length);
        return true;
    }

    /// <summary>ERROR payload: error u32, message length u16, message.</summary>
    public static int ErrorPayloadSize(int messageBytes) => 6 + messageBytes;

    public static int WriteError(Span<byte> destination, uint error, ReadOnlySpan<byte> message)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, error);
        BinaryPrimitives.WriteUInt16BigEndian(destination[4..], checked((ushort)message.Length));
        message.CopyTo(destination[6..]);
        return 6 + message.Length;
    }

    /// <summary>
    /// BLOCK_STATUS payload: context id u32, then descriptors of length u32 + flags u32.
    /// BLOCK_STATUS_EXT payload: context id u32, descriptor count u32, then length u64 + flags u64.
    /// </summary>
    public static int BlockStatusPayloadSize(bool extended, int descriptors) =>
        extended ? 8 + (16 * descriptors) : 4 + (8 * descriptors);

    public static int WriteBlockStatusPrefix(Span<byte> destination, bool extended, uint contextId, int descriptors)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, contextId);
        if (!extended)
        {
            return 4;
        }

        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], (uint)descriptors);
        return 8;
    }

    /// <summary>
    /// Reads the context id and the descriptor count of a BLOCK_STATUS(_EXT) payload; false when the payload
    /// is not a whole number of descriptors (or, extended, disagrees with its count).
    /// </summary>
    public static bool TryParseBlockStatusPrefix(ReadOnlySpan<byte> source, bool extended, out uint contextId, out int descriptors)
    {
        contextId = 0;
        descriptors = 0;
        var prefix = extended ? 8 : 4;
        var size = extended ? 16 : 8;
        if (source.Length < prefix + size || (source.Length - prefix) % size != 0)
        {
            return false;
        }

        contextId = BinaryPrimitives.ReadUInt32BigEndian(source);
        descriptors = (source.Length - prefix) / size;
        return !extended || BinaryPrimitives.ReadUInt32BigEndian(source[4..]) == (uint)descriptors;
    }

    /// <summary>Reads descriptor <paramref name="index"/> of a BLOCK_STATUS(_EXT) payload whose prefix was checked.</summary>
    public static void ReadBlockStatusDescriptor(ReadOnlySpan<byte> source, bool extended, int index, out ulong length, out uint flags)
    {
        if (extended)
        {
            var d = source[(8 + (16 * index))..];
            length = BinaryPrimitives.ReadUInt64BigEndian(d);
            flags = (uint)BinaryPrimitives.ReadUInt64BigEndian(d[8..]);
            return;
        }

        var c = source[(4 + (8 * index))..];
        length = BinaryPrimitives.ReadUInt32BigEndian(c);
        flags = BinaryPrimitives.ReadUInt32BigEndian(c[4..]);
    }

    public static int WriteBlockStatusDescriptor(Span<byte> destination, bool extended, ulong length, uint flags)
    {
        if (extended)
        {
            BinaryPrimitives.WriteUInt64BigEndian(destination, length);
            BinaryPrimitives.WriteUInt64BigEndian(destination[8..], flags);
            return 16;
        }

        BinaryPrimitives.WriteUInt32BigEndian(destination, checked((uint)length));
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], flags);
        return 8;
    }
}
