using System.Buffers.Binary;
using System.Text;

namespace ExportServer.Nbd.Protocol;

/// <summary>
/// Handshake messages on the wire (big-endian): the server greeting, option headers, option reply
/// headers, the EXPORT_NAME reply, INFO payloads, and the data of INFO/GO and *_META_CONTEXT options.
/// </summary>
internal static class NbdOptionCodec
{
    public const int GreetingSize = 18;
    public const int ExportNameReplyZeroes = 124;
    public const int InfoExportSize = 12;
    public const int InfoBlockSizeSize = 14;

    private static readonly UTF8Encoding s_strictUtf8 = new(false, true);

    /// <summary>Greeting: "NBDMAGIC" u64, "IHAVEOPT" u64, handshake flags u16.</summary>
    public static int WriteGreeting(Span<byte> destination, ushort handshakeFlags)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, NbdConstants.InitMagic);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], NbdConstants.OptionMagic);
        BinaryPrimitives.WriteUInt16BigEndian(destination[16..], handshakeFlags);
        return GreetingSize;
    }

    /// <summary>
    /// Reads the greeting of a newstyle server; false when the magics are not "NBDMAGIC" "IHAVEOPT"
    /// (an oldstyle server or not NBD at all).
    /// </summary>
    public static bool TryParseGreeting(ReadOnlySpan<byte> source, out ushort handshakeFlags)
    {
        handshakeFlags = 0;
        if (source.Length < GreetingSize
            || BinaryPrimitives.ReadUInt64BigEndian(source) != NbdConstants.InitMagic
            || BinaryPrimitives.ReadUInt64BigEndian(source[8..]) != NbdConstants.OptionMagic)
        {
            return false;
        }

        handshakeFlags = BinaryPrimitives.ReadUInt16BigEndian(source[16..]);
        return true;
    }

    /// <summary>Option header: "IHAVEOPT" u64, option u32, data length u32.</summary>
    public static NbdParseStatus TryParseOptionHeader(ReadOnlySpan<byte> source, out NbdOptionHeader header)
    {
        header = default;
        if (source.Length < NbdConstants.OptionHeaderSize)
        {
            return NbdParseStatus.Incomplete;
        }

        if (BinaryPrimitives.ReadUInt64BigEndian(source) != NbdConstants.OptionMagic)
        {
            return NbdParseStatus.BadMagic;
        }

        header = new NbdOptionHeader(BinaryPrimitives.ReadUInt32BigEndian(source[8..]), BinaryPrimitives.ReadUInt32BigEndian(source[12..]));
        return NbdParseStatus.Ok;
    }

    public static int WriteOptionHeader(Span<byte> destination, uint option, uint length)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, NbdConstants.OptionMagic);
        BinaryPrimitives.WriteUInt32BigEndian(destination[8..], option);
        BinaryPrimitives.WriteUInt32BigEndian(destination[12..], length);
        return NbdConstants.OptionHeaderSize;
    }

    /// <summary>Option reply header: magic u64, option u32, reply type u32, data length u32.</summary>
    public static int WriteOptionReplyHeader(Span<byte> destination, uint option, uint replyType, uint length)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, NbdConstants.OptionReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(destination[8..], option);
        BinaryPrimitives.WriteUInt32BigEndian(destination[12..], replyType);
        BinaryPrimitives.WriteUInt32BigEndian(destination[16..], length);
        return NbdConstants.OptionReplyHeaderSize;
    }

    /// <summary>Option reply header (client side): magic u64, option u32, reply type u32, data length u32.</summary>
    public static NbdParseStatus TryParseOptionReplyHeader(ReadOnlySpan<byte> source, out NbdOptionReplyHeader header)
    {
        header = default;
        if (source.Length < NbdConstants.OptionReplyHeaderSize)
        {
            return NbdParseStatus.Incomplete;
        }

        if (BinaryPrimitives.ReadUInt64BigEndian(source) != NbdConstants.OptionReplyMagic)
        {
            return NbdParseStatus.BadMagic;
        }

        header = new NbdOptionReplyHeader(
            BinaryPrimitives.ReadUInt32BigEndian(source[8..]),
            BinaryPrimitives.ReadUInt32BigEndian(source[12..]),
            BinaryPrimitives.ReadUInt32BigEndian(source[16..]));
        return NbdParseStatus.Ok;
    }

    /// <summary>The size and transmission flags at the start of an EXPORT_NAME reply (the zero padding is not read).</summary>
    public static void ReadExportNameReply(ReadOnlySpan<byte> source, out ulong size, out ushort flags)
    {
        size = BinaryPrimitives.ReadUInt64BigEndian(source);
        flags = BinaryPrimitives.ReadUInt16BigEndian(source[8..]);
    }

    /// <summary>EXPORT_NAME reply: size u64, transmission flags u16, then 124 zero bytes unless NO_ZEROES.</summary>
    public static int WriteExportNameReply(Span<byte> destination, ulong size, ushort flags, bool noZeroes)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, size);
        BinaryPrimitives.WriteUInt16BigEndian(destination[8..], flags);
        if (noZeroes)
        {
            return 10;
        }

        destination.Slice(10, ExportNameReplyZeroes).Clear();
        return 10 + ExportNameReplyZeroes;
    }

    /// <summary>NBD_INFO_EXPORT: type u16 (0), size u64, transmission flags u16.</summary>
    public static int WriteInfoExport(Span<byte> destination, ulong size, ushort flags)
    {
        BinaryPrimitives.WriteUInt16BigEndian(destination, NbdConstants.InfoExport);
        BinaryPrimitives.WriteUInt64BigEndian(destination[2..], size);
        BinaryPrimitives.WriteUInt16BigEndian(destination[10..], flags);
        return InfoExportSize;
    }

    /// <summary>NBD_INFO_BLOCK_SIZE: type u16 (3), minimum u32, preferred u32, maximum u32.</summary>
    public static int WriteInfoBlockSize(Span<byte> destination, uint minimum, uint preferred, uint maximum)
    {
        BinaryPrimitives.WriteUInt16BigEndian(destination, NbdConstants.InfoBlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(destination[2..], minimum);
        BinaryPrimitives.WriteUInt32BigEndian(destination[6..], preferred);
        BinaryPrimitives.WriteUInt32BigEndian(destination[10..], maximum);
        return InfoBlockSizeSize;
    }

    /// <summary>Reads NBD_INFO_EXPORT data (after the type); false when the length is wrong.</summary>
    public static bool TryParseInfoExport(ReadOnlySpan<byte> data, out ulong size, out ushort flags)
    {
        size = 0;
        flags = 0;
        if (data.Length != InfoExportSize)
        {
            return false;
        }

        size = BinaryPrimitives.ReadUInt64BigEndian(data[2..]);
        flags = BinaryPrimitives.ReadUInt16BigEndian(data[10..]);
        return true;
    }

    /// <summary>Reads NBD_INFO_BLOCK_SIZE data; false when the length is wrong.</summary>
    public static bool TryParseInfoBlockSize(ReadOnlySpan<byte> data, out uint minimum, out uint preferred, out uint maximum)
    {
        minimum = preferred = maximum = 0;
        if (data.Length != InfoBlockSizeSize)
        {
            return false;
        }

        minimum = BinaryPrimitives.ReadUInt32BigEndian(data[2..]);
        preferred = BinaryPrimitives.ReadUInt32BigEndian(data[6..]);
        maximum = BinaryPrimitives.ReadUInt32BigEndian(data[10..]);
        return true;
    }

    /// <summary>NBD_INFO_NAME / NBD_INFO_DESCRIPTION: type u16, then the string to the end of the reply.</summary>
    public static byte[] InfoString(ushort infoType, string value)
    {
        var bytes = new byte[2 + Encoding.UTF8.GetByteCount(value)];
        BinaryPrimitives.WriteUInt16BigEndian(bytes, infoType);
        Encoding.UTF8.GetBytes(value, bytes.AsSpan(2));
        return bytes;
    }

    /// <summary>NBD_REP_SERVER data: name length u32, name, then optional human-readable details.</summary>
    public static byte[] ServerReply(string name, string? details)
    {
        var nameBytes = Encoding.UTF8.GetBytes(name);
        var detailBytes = details is null ? [] : Encoding.UTF8.GetBytes(details);
        var data = new byte[4 + nameBytes.Length + detailBytes.Length];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)nameBytes.Length);
        nameBytes.CopyTo(data, 4);
        detailBytes.CopyTo(data, 4 + nameBytes.Length);
        return data;
    }

    /// <summary>NBD_REP_META_CONTEXT data: context id u32, context name.</summary>
    public static byte[] MetaContextReply(uint id, string name)
    {
        var data = new byte[4 + Encoding.UTF8.GetByteCount(name)];
        BinaryPrimitives.WriteUInt32BigEndian(data, id);
        Encoding.UTF8.GetBytes(name, data.AsSpan(4));
        return data;
    }

    /// <summary>Reads NBD_REP_META_CONTEXT data: context id u32, then the name to the end.</summary>
    public static bool TryParseMetaContextReply(ReadOnlySpan<byte> data, out uint id, out string name)
    {
        id = 0;
        name = string.Empty;
        if (data.Length < 4 || data.Length - 4 > NbdConstants.MaxStringSize)
        {
            return false;
        }

        id = BinaryPrimitives.ReadUInt32BigEndian(data);
        try
        {
            name = s_strictUtf8.GetString(data[4..]);
        }
        catch (DecoderFallbackException)
        {
            return false;
        }

        return true;
    }

    /// <summary>
    /// INFO/GO data: name length u32, name, number of info requests u16, info types u16 each.
    /// Fails when the lengths do not add up exactly or the name is not valid UTF-8.
    /// </summary>
    public static bool TryParseInfoRequest(ReadOnlySpan<byte> data, out string name, out ushort[] infos)
    {
        infos = [];
        if (!TryReadString(ref data, out name) || data.Length < 2)
        {
            return false;
        }

        var count = BinaryPrimitives.ReadUInt16BigEndian(data);
        data = data[2..];
        if (data.Length != count * 2)
        {
            return false;
        }

        infos = new ushort[count];
        for (var i = 0; i < count; i++)
        {
            infos[i] = BinaryPrimitives.ReadUInt16BigEndian(data[(i * 2)..]);
        }

        return true;
    }

    public static byte[] InfoRequest(string name, ReadOnlySpan<ushort> infos)
    {
        var nameBytes = Encoding.UTF8.GetBytes(name);
        var data = new byte[4 + nameBytes.Length + 2 + (2 * infos.Length)];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)nameBytes.Length);
        nameBytes.CopyTo(data, 4);
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(4 + nameBytes.Length), (ushort)infos.Length);
        for (var i = 0; i < infos.Length; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(6 + nameBytes.Length + (2 * i)), infos[i]);
        }

        return data;
    }

    /// <summary>
    /// LIST/SET_META_CONTEXT data: export name length u32, export name, number of queries u32, then each
    /// query as length u32 + string. Fails when the lengths do not add up exactly.
    /// </summary>
    public static bool TryParseMetaContextRequest(ReadOnlySpan<byte> data, out string name, out List<string> queries)
    {
        queries = new List<string>();
        if (!TryReadString(ref data, out name) || data.Length < 4)
        {
            return false;
        }

        var count = BinaryPrimitives.ReadUInt32BigEndian(data);
        data = data[4..];
        for (var i = 0u; i < count; i++)
        {
            if (!TryReadString(ref data, out var query))
            {
                return false;
            }

            queries.Add(query);
        }

        return data.IsEmpty;
    }

    public static byte[] MetaContextRequest(string name, IReadOnlyList<string> queries)
    {
        var parts = new List<byte[]> { Encoding.UTF8.GetBytes(name) };
        parts.AddRange(queries.Select(Encoding.UTF8.GetBytes));
        var data = new byte[parts.Sum(p => 4 + p.Length) + 4];
        var at = 0;
        for (var i = 0; i < parts.Count; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(data.AsSpan(at), (uint)parts[i].Length);
            parts[i].CopyTo(data, at + 4);
            at += 4 + parts[i].Length;
            if (i == 0)
            {
                BinaryPrimitives.WriteUInt32BigEndian(data.AsSpan(at), (uint)queries.Count);
                at += 4;
            }
        }

        return data;
    }

    /// <summary>Reads a u32 length-prefixed UTF-8 string no longer than the protocol's string limit.</summary>
    private static bool TryReadString(ref ReadOnlySpan<byte> data, out string value)
    {
        value = string.Empty;
        if (data.Length < 4)
        {
            return false;
        }

        var length = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (length > NbdConstants.MaxStringSize || length > data.Length - 4)
        {
            return false;
        }

        try
        {
            value = s_strictUtf8.GetString(data.Slice(4, (int)length));
        }
        catch (DecoderFallbackException)
        {
            return false;
        }

        data = data[(4 + (int)length)..];
        return true;
    }
}
