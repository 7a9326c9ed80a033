using System.Buffers;
using System.Buffers.Binary;

namespace ExportServer.Nbd.Protocol;

/// <summary>
/// Request headers on the wire. Compact: magic u32, flags u16, type u16, cookie u64, offset u64,
/// length u32 (28 bytes). Extended: the same with a different magic and a u64 length (32 bytes).
/// All big-endian.
/// </summary>
internal static class NbdRequestCodec
{
    private const int FlagsOffset = 4;
    private const int TypeOffset = 6;
    private const int CookieOffset = 8;
    private const int OffsetOffset = 16;
    private const int LengthOffset = 24;

    public static int HeaderSize(bool extended) =>
        extended ? NbdConstants.ExtendedRequestHeaderSize : NbdConstants.RequestHeaderSize;

    /// <summary>
    /// Parses one header from the start of <paramref name="buffer"/>. On <see cref="NbdParseStatus.Ok"/>,
    /// <paramref name="consumed"/> is the position just after it; otherwise it is the start.
    /// </summary>
    public static NbdParseStatus TryParse(in ReadOnlySequence<byte> buffer, bool extended, out NbdRequest request, out SequencePosition consumed)
    {
        var size = HeaderSize(extended);
        consumed = buffer.Start;
        request = default;
        if (buffer.Length < size)
        {
            return NbdParseStatus.Incomplete;
        }

        scoped ReadOnlySpan<byte> header;
        Span<byte> copy = stackalloc byte[NbdConstants.ExtendedRequestHeaderSize];
        if (buffer.FirstSpan.Length >= size)
        {
            header = buffer.FirstSpan[..size];
        }
        else
        {
            buffer.Slice(0, size).CopyTo(copy);
            header = copy[..size];
        }

        var status = TryParse(header, extended, out request);
        if (status == NbdParseStatus.Ok)
        {
            consumed = buffer.GetPosition(size);
        }

        return status;
    }

    /// <summary>Parses a complete header held in <paramref name="header"/>.</summary>
    public static NbdParseStatus TryParse(ReadOnlySpan<byte> header, bool extended, out NbdRequest request)
    {
        request = default;
        if (header.Length < HeaderSize(extended))
        {
            return NbdParseStatus.Incomplete;
        }

        var magic = BinaryPrimitives.ReadUInt32BigEndian(header);
        if (magic != (extended ? NbdConstants.ExtendedRequestMagic : NbdConstants.RequestMagic))
        {
            return NbdParseStatus.BadMagic;
        }

        var length = extended
            ? BinaryPrimitives.ReadUInt64BigEndian(header[LengthOffset..])
            : BinaryPrimitives.ReadUInt32BigEndian(header[LengthOffset..]);
        request = new NbdRequest(
            BinaryPrimitives.ReadUInt16BigEndian(header[FlagsOffset..]),
            BinaryPrimitives.ReadUInt16BigEndian(header[TypeOffset..]),
            BinaryPrimitives.ReadUInt64BigEndian(header[CookieOffset..]),
            BinaryPrimitives.ReadUInt64BigEndian(header[OffsetOffset..]),
            length);
        return NbdParseStatus.Ok;
    }

    /// <summary>Writes a header; a compact header requires <see cref="NbdRequest.Length"/> to fit 32 bits.</summary>
    public static int Write(Span<byte> destination, bool extended, in NbdRequest request)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, extended ? NbdConstants.ExtendedRequestMagic : NbdConstants.RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(destination[FlagsOffset..], request.Flags);
        BinaryPrimitives.WriteUInt16BigEndian(destination[TypeOffset..], request.Type);
        BinaryPrimitives.WriteUInt64BigEndian(destination[CookieOffset..], request.Cookie);
        BinaryPrimitives.WriteUInt64BigEndian(destination[OffsetOffset..], request.Offset);
        if (extended)
        {
            BinaryPrimitives.WriteUInt64BigEndian(destination[LengthOffset..], request.Length);
        }
        else
        {
            BinaryPrimitives.WriteUInt32BigEndian(destination[LengthOffset..], checked((uint)request.Length));
        }

        return HeaderSize(extended);
    }
}
