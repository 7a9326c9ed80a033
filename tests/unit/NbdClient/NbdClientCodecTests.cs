using ExportServer.Nbd.Protocol;
using Xunit;
using C = ExportServer.Nbd.Protocol.NbdConstants;

namespace ExportServer.UnitTests.NbdClientDriver;

/// <summary>The client-side directions of the wire codecs, on golden bytes (big-endian throughout).</summary>
public sealed class NbdClientCodecTests
{
    [Fact]
    public void Greeting()
    {
        byte[] bytes = [.. "NBDMAGIC"u8, .. "IHAVEOPT"u8, 0x00, 0x03];
        Assert.True(NbdOptionCodec.TryParseGreeting(bytes, out var flags));
        Assert.Equal(C.FlagFixedNewstyle | C.FlagNoZeroes, flags);

        // Oldstyle: "NBDMAGIC" then 0x00420281861253.
        byte[] old = [.. "NBDMAGIC"u8, 0x00, 0x00, 0x42, 0x02, 0x81, 0x86, 0x12, 0x53, 0, 0];
        Assert.False(NbdOptionCodec.TryParseGreeting(old, out _));
    }

    [Fact]
    public void OptionReplyHeader()
    {
        byte[] bytes =
        [
            0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9, // reply magic
            0x00, 0x00, 0x00, 0x07, // option GO
            0x80, 0x00, 0x00, 0x06, // ERR_UNKNOWN
            0x00, 0x00, 0x00, 0x05, // length
        ];
        Assert.Equal(NbdParseStatus.Ok, NbdOptionCodec.TryParseOptionReplyHeader(bytes, out var h));
        Assert.Equal(new NbdOptionReplyHeader(C.OptGo, C.RepErrUnknown, 5), h);
        Assert.True(h.IsError);
        Assert.Equal(NbdParseStatus.Incomplete, NbdOptionCodec.TryParseOptionReplyHeader(bytes.AsSpan(0, 19), out _));
        bytes[0] = 1;
        Assert.Equal(NbdParseStatus.BadMagic, NbdOptionCodec.TryParseOptionReplyHeader(bytes, out _));
    }

    [Fact]
    public void InfoPayloads()
    {
        byte[] export = [0x00, 0x00, 0, 0, 0, 0, 0, 0x10, 0, 0, 0x01, 0x4d];
        Assert.True(NbdOptionCodec.TryParseInfoExport(export, out var size, out var flags));
        Assert.Equal(1UL << 20, size);
        Assert.Equal(0x014d, flags);
        Assert.False(NbdOptionCodec.TryParseInfoExport(export.AsSpan(0, 11), out _, out _));

        byte[] block = [0x00, 0x03, 0, 0, 0x02, 0, 0, 0, 0x10, 0, 0x02, 0, 0, 0];
        Assert.True(NbdOptionCodec.TryParseInfoBlockSize(block, out var min, out var preferred, out var max));
        Assert.Equal((512u, 4096u, 32u << 20), (min, preferred, max));
    }

    [Fact]
    public void MetaContextReply()
    {
        byte[] bytes = [0, 0, 0, 9, .. "base:allocation"u8];
        Assert.True(NbdOptionCodec.TryParseMetaContextReply(bytes, out var id, out var name));
        Assert.Equal(9u, id);
        Assert.Equal("base:allocation", name);
        Assert.False(NbdOptionCodec.TryParseMetaContextReply([0, 0, 0], out _, out _));
        Assert.False(NbdOptionCodec.TryParseMetaContextReply([0, 0, 0, 1, 0xff], out _, out _));
    }

    [Fact]
    public void ErrorAndHolePayloads()
    {
        byte[] error = [0, 0, 0, 0x1c, 0, 3, (byte)'f', (byte)'u', (byte)'l'];
        Assert.True(NbdReplyCodec.TryParseError(error, out var e, out var message));
        Assert.Equal(C.ENOSPC, e);
        Assert.Equal("ful"u8.ToArray(), message.ToArray());
        Assert.False(NbdReplyCodec.TryParseError(error.AsSpan(0, 8), out _, out _));

        byte[] hole = [0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0x02, 0];
        NbdReplyCodec.ReadOffsetHole(hole, out var offset, out var length);
        Assert.Equal((4096UL, 512u), (offset, length));
    }

    [Fact]
    public void BlockStatusCompactAndExtended()
    {
        byte[] compact = [0, 0, 0, 1, 0, 0, 0x10, 0, 0, 0, 0, 3, 0, 0, 0x20, 0, 0, 0, 0, 0];
        Assert.True(NbdReplyCodec.TryParseBlockStatusPrefix(compact, false, out var id, out var count));
        Assert.Equal((1u, 2), (id, count));
        NbdReplyCodec.ReadBlockStatusDescriptor(compact, false, 1, out var len, out var flags);
        Assert.Equal((8192UL, 0u), (len, flags));
        Assert.False(NbdReplyCodec.TryParseBlockStatusPrefix(compact.AsSpan(0, 19), false, out _, out _));

        byte[] extended = [0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, (byte)C.StateHole];
        Assert.True(NbdReplyCodec.TryParseBlockStatusPrefix(extended, true, out id, out count));
        Assert.Equal((2u, 1), (id, count));
        NbdReplyCodec.ReadBlockStatusDescriptor(extended, true, 0, out len, out flags);
        Assert.Equal((1UL << 32, C.StateHole), (len, flags));

        // The count must agree with the payload length.
        extended[7] = 2;
        Assert.False(NbdReplyCodec.TryParseBlockStatusPrefix(extended, true, out _, out _));
    }
}
