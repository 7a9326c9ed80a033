using System.Buffers;
using ExportServer.Nbd.Protocol;
using Xunit;
using C = ExportServer.Nbd.Protocol.NbdConstants;

namespace ExportServer.UnitTests.Nbd;

/// <summary>Wire codecs against golden bytes, one comment per field.</summary>
public sealed class NbdCodecTests
{
    private static readonly byte[] s_compactRead =
    [
        0x25, 0x60, 0x95, 0x13,                         // magic NBD_REQUEST_MAGIC
        0x00, 0x04,                                     // flags: DF
        0x00, 0x00,                                     // type: READ
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // cookie
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, // offset 4 GiB
        0x00, 0x01, 0x00, 0x00,                         // length 64 KiB
    ];

    private static readonly byte[] s_extendedWrite =
    [
        0x21, 0xe4, 0x1c, 0x71,                         // magic NBD_EXTENDED_REQUEST_MAGIC
        0x00, 0x01,                                     // flags: FUA
        0x00, 0x01,                                     // type: WRITE
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, // cookie 42
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, // offset 4096
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, // length 4 GiB (64-bit)
    ];

    [Fact]
    public void ParsesCompactRequest()
    {
        Assert.Equal(NbdParseStatus.Ok, NbdRequestCodec.TryParse(s_compactRead, false, out var r));
        Assert.Equal(new NbdRequest(C.CmdFlagDf, C.CmdRead, 0x0102030405060708, 1ul << 32, 65536), r);
    }

    [Fact]
    public void ParsesExtendedRequestWithWideLength()
    {
        Assert.Equal(NbdParseStatus.Ok, NbdRequestCodec.TryParse(s_extendedWrite, true, out var r));
        Assert.Equal(new NbdRequest(C.CmdFlagFua, C.CmdWrite, 42, 4096, 1ul << 32), r);
    }

    [Fact]
    public void WritesRequestsBackToTheSameBytes()
    {
        var buffer = new byte[32];
        Assert.Equal(28, NbdRequestCodec.Write(buffer, false, new NbdRequest(C.CmdFlagDf, C.CmdRead, 0x0102030405060708, 1ul << 32, 65536)));
        Assert.Equal(s_compactRead, buffer[..28]);
        Assert.Equal(32, NbdRequestCodec.Write(buffer, true, new NbdRequest(C.CmdFlagFua, C.CmdWrite, 42, 4096, 1ul << 32)));
        Assert.Equal(s_extendedWrite, buffer);
    }

    [Fact]
    public void RequestSplitAcrossSegmentsParsesAndReportsConsumed()
    {
        var first = new Segment(s_compactRead[..5]);
        var last = first.Append(s_compactRead[5..].Concat(new byte[] { 0xFF }).ToArray());
        var sequence = new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);

        Assert.Equal(NbdParseStatus.Ok, NbdRequestCodec.TryParse(sequence, false, out var r, out var consumed));
        Assert.Equal(65536ul, r.Length);
        Assert.Equal(28, sequence.Slice(0, consumed).Length);
    }

    [Fact]
    public void ShortOrWrongRequestsAreIncompleteOrBadMagic()
    {
        Assert.Equal(NbdParseStatus.Incomplete, NbdRequestCodec.TryParse(new ReadOnlySequence<byte>(s_compactRead[..27]), false, out _, out var consumed));
        Assert.Equal(0, consumed.GetInteger());
        Assert.Equal(NbdParseStatus.BadMagic, NbdRequestCodec.TryParse(s_extendedWrite, false, out _));
        Assert.Equal(NbdParseStatus.BadMagic, NbdRequestCodec.TryParse(new byte[28], false, out _));
    }

    [Fact]
    public void SimpleReply()
    {
        var buffer = new byte[16];
        NbdReplyCodec.WriteSimple(buffer, C.ENOSPC, 7);
        Assert.Equal(
            [
                0x67, 0x44, 0x66, 0x98,                         // magic NBD_SIMPLE_REPLY_MAGIC
                0x00, 0x00, 0x00, 0x1c,                         // error ENOSPC (28)
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, // cookie
            ],
            buffer);
    }

    [Fact]
    public void StructuredChunkWithOffsetHole()
    {
        var buffer = new byte[32];
        var n = NbdReplyCodec.WriteChunkHeader(buffer, false, C.ReplyFlagDone, C.ReplyTypeOffsetHole, 9, 512, 12);
        n += NbdReplyCodec.WriteOffsetHole(buffer.AsSpan(n), 1024, 4096);
        Assert.Equal(
            [
                0x66, 0x8e, 0x33, 0xef,                         // magic NBD_STRUCTURED_REPLY_MAGIC
                0x00, 0x01,                                     // flags: DONE
                0x00, 0x02,                                     // type: OFFSET_HOLE
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, // cookie
                0x00, 0x00, 0x00, 0x0c,                         // payload length 12
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, // hole offset 1024
                0x00, 0x00, 0x10, 0x00,                         // hole size 4096
            ],
            buffer[..n]);
    }

    [Fact]
    public void ExtendedChunkCarriesRequestOffsetAndWideLength()
    {
        var buffer = new byte[32];
        NbdReplyCodec.WriteChunkHeader(buffer, true, 0, C.ReplyTypeOffsetData, 3, 0x200, 0x1_0000_0008);
        Assert.Equal(
            [
                0x6e, 0x8a, 0x27, 0x8c,                         // magic NBD_EXTENDED_REPLY_MAGIC
                0x00, 0x00,                                     // flags: none (more chunks follow)
                0x00, 0x01,                                     // type: OFFSET_DATA
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, // cookie
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, // offset of the request
                0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x08, // payload length (64-bit)
            ],
            buffer);
        Assert.Equal(NbdParseStatus.Ok, NbdReplyCodec.TryParseHeader(buffer, out var h, out var size));
        Assert.Equal((32, false, 0x200ul, 0x1_0000_0008ul), (size, h.IsDone, h.Offset, h.Length));
    }

    [Fact]
    public void ErrorChunkPayload()
    {
        var buffer = new byte[16];
        var n = NbdReplyCodec.WriteError(buffer, C.EINVAL, "bad"u8);
        Assert.Equal(
            [
                0x00, 0x00, 0x00, 0x16, // error EINVAL (22)
                0x00, 0x03,             // message length
                0x62, 0x61, 0x64,       // "bad"
            ],
            buffer[..n]);
    }

    [Fact]
    public void BlockStatusPayloadsCompactAndExtended()
    {
        var buffer = new byte[64];
        var n = NbdReplyCodec.WriteBlockStatusPrefix(buffer, false, 1, 1);
        n += NbdReplyCodec.WriteBlockStatusDescriptor(buffer.AsSpan(n), false, 65536, C.StateHole | C.StateZero);
        Assert.Equal(
            [
                0x00, 0x00, 0x00, 0x01, // context id
                0x00, 0x01, 0x00, 0x00, // extent length 65536
                0x00, 0x00, 0x00, 0x03, // flags HOLE | ZERO
            ],
            buffer[..n]);
        Assert.Equal(NbdReplyCodec.BlockStatusPayloadSize(false, 1), n);

        n = NbdReplyCodec.WriteBlockStatusPrefix(buffer, true, 0, 1);
        n += NbdReplyCodec.WriteBlockStatusDescriptor(buffer.AsSpan(n), true, 1ul << 33, 2);
        Assert.Equal(
            [
                0x00, 0x00, 0x00, 0x00,                         // context id
                0x00, 0x00, 0x00, 0x01,                         // descriptor count
                0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, // extent length 8 GiB
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, // flags ZERO (64-bit)
            ],
            buffer[..n]);
        Assert.Equal(NbdReplyCodec.BlockStatusPayloadSize(true, 1), n);
    }

    [Fact]
    public void GreetingAndOptionHeaders()
    {
        var buffer = new byte[20];
        NbdOptionCodec.WriteGreeting(buffer, C.FlagFixedNewstyle | C.FlagNoZeroes);
        Assert.Equal(
            [
                0x4e, 0x42, 0x44, 0x4d, 0x41, 0x47, 0x49, 0x43, // "NBDMAGIC"
                0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54, // "IHAVEOPT"
                0x00, 0x03,                                     // handshake flags FIXED_NEWSTYLE | NO_ZEROES
            ],
            buffer[..18]);

        byte[] option =
        [
            0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54, // "IHAVEOPT"
            0x00, 0x00, 0x00, 0x07,                         // option GO
            0x00, 0x00, 0x00, 0x0a,                         // data length
        ];
        Assert.Equal(NbdParseStatus.Ok, NbdOptionCodec.TryParseOptionHeader(option, out var header));
        Assert.Equal(new NbdOptionHeader(C.OptGo, 10), header);
        option[0] = 0;
        Assert.Equal(NbdParseStatus.BadMagic, NbdOptionCodec.TryParseOptionHeader(option, out _));

        NbdOptionCodec.WriteOptionReplyHeader(buffer, C.OptGo, C.RepErrUnknown, 5);
        Assert.Equal(
            [
                0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9, // option reply magic
                0x00, 0x00, 0x00, 0x07,                         // option GO
                0x80, 0x00, 0x00, 0x06,                         // reply ERR_UNKNOWN
                0x00, 0x00, 0x00, 0x05,                         // data length
            ],
            buffer);
    }

    [Fact]
    public void InfoPayloads()
    {
        var buffer = new byte[14];
        NbdOptionCodec.WriteInfoExport(buffer, 1 << 20, C.FlagHasFlags | C.FlagReadOnly);
        Assert.Equal(
            [
                0x00, 0x00,                                     // info type EXPORT
                0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, // size 1 MiB
                0x00, 0x03,                                     // flags HAS_FLAGS | READ_ONLY
            ],
            buffer[..12]);
        NbdOptionCodec.WriteInfoBlockSize(buffer, 1, 4096, 32 << 20);
        Assert.Equal(
            [
                0x00, 0x03,             // info type BLOCK_SIZE
                0x00, 0x00, 0x00, 0x01, // minimum
                0x00, 0x00, 0x10, 0x00, // preferred 4096
                0x02, 0x00, 0x00, 0x00, // maximum 32 MiB
            ],
            buffer);
    }

    [Fact]
    public void InfoRequestParsesAndRejectsBadLengths()
    {
        byte[] data =
        [
            0x00, 0x00, 0x00, 0x02, // name length
            0x68, 0x64,             // "hd"
            0x00, 0x02,             // number of info requests
            0x00, 0x01,             // NAME
            0x00, 0x03,             // BLOCK_SIZE
        ];
        Assert.True(NbdOptionCodec.TryParseInfoRequest(data, out var name, out var infos));
        Assert.Equal("hd", name);
        Assert.Equal([C.InfoName, C.InfoBlockSize], infos);
        Assert.Equal(data, NbdOptionCodec.InfoRequest("hd", [C.InfoName, C.InfoBlockSize]));
        Assert.False(NbdOptionCodec.TryParseInfoRequest(data[..^1], out _, out _));
        data[3] = 0x20;
        Assert.False(NbdOptionCodec.TryParseInfoRequest(data, out _, out _));
    }

    [Fact]
    public void MetaContextRequestParses()
    {
        byte[] data =
        [
            0x00, 0x00, 0x00, 0x01,                         // export name length
            0x78,                                           // "x"
            0x00, 0x00, 0x00, 0x01,                         // number of queries
            0x00, 0x00, 0x00, 0x05,                         // query length
            0x62, 0x61, 0x73, 0x65, 0x3a,                   // "base:"
        ];
        Assert.True(NbdOptionCodec.TryParseMetaContextRequest(data, out var name, out var queries));
        Assert.Equal("x", name);
        Assert.Equal(["base:"], queries);
        Assert.Equal(data, NbdOptionCodec.MetaContextRequest("x", ["base:"]));
        Assert.False(NbdOptionCodec.TryParseMetaContextRequest(data.Append((byte)0).ToArray(), out _, out _));
    }

    [Fact]
    public void ExportNameReplyWithAndWithoutZeroes()
    {
        var buffer = new byte[134];
        Assert.Equal(10, NbdOptionCodec.WriteExportNameReply(buffer, 512, C.FlagHasFlags, noZeroes: true));
        Assert.Equal(
            [
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, // size 512
                0x00, 0x01,                                     // flags HAS_FLAGS
            ],
            buffer[..10]);
        Array.Fill(buffer, (byte)0xFF);
        Assert.Equal(134, NbdOptionCodec.WriteExportNameReply(buffer, 512, C.FlagHasFlags, noZeroes: false));
        Assert.All(buffer[10..], b => Assert.Equal(0, b));
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(byte[] data) => Memory = data;

        public Segment Append(byte[] data)
        {
            var next = new Segment(data) { RunningIndex = RunningIndex + Memory.Length };
            Next = next;
            return next;
        }
    }
}
