using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using ExportServer.Block.Core;
using ExportServer.Nbd.Protocol;
using ExportServer.Nbd.Server;
using ExportServer.UnitTests.Support;
using Xunit;
using C = ExportServer.Nbd.Protocol.NbdConstants;

namespace ExportServer.UnitTests.Nbd;

/// <summary>The server in process on a unix socket, driven by a raw client that can send anything.</summary>
public sealed class NbdServerTests : IAsyncLifetime
{
    private const int Size = 1024 * 1024;
    private readonly string _dir = Directory.CreateTempSubdirectory("nbdtest").FullName;
    private NbdServer _server = null!;
    private SparseNode _node = null!;

    private string SocketPath => Path.Combine(_dir, "nbd.sock");

    public Task InitializeAsync()
    {
        var data = new byte[Size];
        new Random(7).NextBytes(data.AsSpan(0, 8192));
        new Random(8).NextBytes(data.AsSpan(65536, 4096));
        _node = new SparseNode("disk", data);
        _server = NewServer();
        _server.Start();
        _server.AddExport(new NbdExportOptions { Name = "disk", Description = "test disk", Node = _node, Writable = true, AllocationDepth = true });
        _server.AddExport(new NbdExportOptions { Name = "ro", Node = new MemoryNode("ro", Size) });
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        Directory.Delete(_dir, true);
    }

    private NbdServer NewServer(int maxConnections = 0) =>
        new(new NbdServerOptions { EndPoints = [new UnixDomainSocketEndPoint(SocketPath)], MaxConnections = maxConnections });

    /// <summary>A client in transmission on <paramref name="export"/>, optionally with structured replies or extended headers.</summary>
    private async Task<RawNbdClient> OpenAsync(string export = "disk", bool structured = true, bool extended = false, params string[] contexts)
    {
        var c = await RawNbdClient.HandshakeAsync(SocketPath);
        if (extended)
        {
            Assert.Equal(C.RepAck, await c.SimpleOptionAsync(C.OptExtendedHeaders));
            c.Extended = true;
        }
        else if (structured)
        {
            Assert.Equal(C.RepAck, await c.SimpleOptionAsync(C.OptStructuredReply));
        }

        if (contexts.Length > 0)
        {
            await c.SendOptionAsync(C.OptSetMetaContext, NbdOptionCodec.MetaContextRequest(export, contexts));
            for (var i = 0; i < contexts.Length; i++)
            {
                Assert.Equal(C.RepMetaContext, (await c.ReadOptionReplyAsync()).Type);
            }

            Assert.Equal(C.RepAck, (await c.ReadOptionReplyAsync()).Type);
        }

        await c.GoAsync(export);
        return c;
    }

    [Fact]
    public async Task GoReportsSizeAndTruthfulFlags()
    {
        await using var c = await RawNbdClient.HandshakeAsync(SocketPath);
        Assert.Equal(C.RepAck, await c.SimpleOptionAsync(C.OptStructuredReply));
        var replies = await c.InfoAsync(C.OptGo, "disk", C.InfoName, C.InfoDescription, C.InfoBlockSize);

        Assert.Equal(C.RepAck, replies[^1].Type);
        var infos = replies.SkipLast(1).ToDictionary(r => BinaryPrimitives.ReadUInt16BigEndian(r.Data), r => r.Data[2..]);
        Assert.Equal("disk"u8.ToArray(), infos[C.InfoName]);
        Assert.Equal("test disk"u8.ToArray(), infos[C.InfoDescription]);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(infos[C.InfoBlockSize]));
        Assert.Equal(4096u, BinaryPrimitives.ReadUInt32BigEndian(infos[C.InfoBlockSize].AsSpan(4)));
        Assert.Equal(32u << 20, BinaryPrimitives.ReadUInt32BigEndian(infos[C.InfoBlockSize].AsSpan(8)));
        Assert.Equal((ulong)Size, BinaryPrimitives.ReadUInt64BigEndian(infos[C.InfoExport]));
        var flags = BinaryPrimitives.ReadUInt16BigEndian(infos[C.InfoExport].AsSpan(8));
        const int expected = C.FlagHasFlags | C.FlagSendFlush | C.FlagSendFua | C.FlagSendTrim | C.FlagSendWriteZeroes
            | C.FlagSendDf | C.FlagCanMultiConn | C.FlagSendCache | C.FlagSendFastZero;
        Assert.Equal(expected, flags);
    }

    [Fact]
    public async Task ReadOnlyExportSaysSoAndRefusesWritesWithEperm()
    {
        await using var c = await RawNbdClient.HandshakeAsync(SocketPath);
        var (_, flags) = await c.GoAsync("ro");
        Assert.NotEqual(0, flags & C.FlagReadOnly);
        Assert.Equal(0, flags & (C.FlagSendTrim | C.FlagSendWriteZeroes));

        await c.SendRequestAsync(C.CmdWrite, 1, 0, 4, payload: [1, 2, 3, 4]);
        Assert.Equal(C.EPERM, (await c.ReadSimpleReplyAsync()).Error);
        await c.SendRequestAsync(C.CmdTrim, 2, 0, 4096);
        Assert.Equal(C.EPERM, (await c.ReadSimpleReplyAsync()).Error);
        await c.SendRequestAsync(C.CmdWriteZeroes, 3, 0, 4096);
        Assert.Equal(C.EPERM, (await c.ReadSimpleReplyAsync()).Error);
        await c.SendRequestAsync(C.CmdRead, 4, 0, 16);
        Assert.Equal(0u, (await c.ReadSimpleReplyAsync(16)).Error);
    }

    [Fact]
    public async Task OptionErrorsKeepTheHandshakeGoing()
    {
        await using var c = await RawNbdClient.HandshakeAsync(SocketPath);
        Assert.Equal(C.RepErrUnsup, await c.SimpleOptionAsync(99));
        Assert.Equal(C.RepErrPolicy, await c.SimpleOptionAsync(C.OptStartTls));
        Assert.Equal(C.RepErrUnknown, (await c.InfoAsync(C.OptGo, "nope"))[^1].Type);
        Assert.Equal(C.RepErrUnknown, (await c.InfoAsync(C.OptGo, string.Empty))[^1].Type);
        Assert.Equal(C.RepAck, (await c.InfoAsync(C.OptInfo, "disk"))[^1].Type);
        await c.SendOptionAsync(C.OptGo, [0, 0, 0, 9, 1]);
        Assert.Equal(C.RepErrInvalid, (await c.ReadOptionReplyAsync()).Type);

        await c.SendOptionAsync(C.OptList, []);
        var names = new List<string>();
        while (true)
        {
            var (_, type, data) = await c.ReadOptionReplyAsync();
            if (type == C.RepAck)
            {
                break;
            }

            Assert.Equal(C.RepServer, type);
            names.Add(System.Text.Encoding.UTF8.GetString(data, 4, (int)BinaryPrimitives.ReadUInt32BigEndian(data)));
        }

        Assert.Equal(["disk", "ro"], names.Order());
        Assert.Equal((ulong)Size, (await c.GoAsync("disk")).Size);
    }

    [Fact]
    public async Task ExportNameHonoursNoZeroesAndUnknownNameCloses()
    {
        await using (var c = await RawNbdClient.HandshakeAsync(SocketPath, clientFlags: C.ClientFlagFixedNewstyle))
        {
            await c.SendOptionAsync(C.OptExportName, "disk"u8.ToArray());
            var reply = await c.ReadExactAsync(10 + 124);
            Assert.Equal((ulong)Size, BinaryPrimitives.ReadUInt64BigEndian(reply));
            Assert.All(reply[10..], b => Assert.Equal(0, b));
        }

        await using (var c = await RawNbdClient.HandshakeAsync(SocketPath))
        {
            await c.SendOptionAsync(C.OptExportName, "disk"u8.ToArray());
            await c.ReadExactAsync(10);
            await c.SendRequestAsync(C.CmdRead, 5, 0, 8);
            var (error, cookie, data) = await c.ReadSimpleReplyAsync(8);
            Assert.Equal((0u, 5ul), (error, cookie));
            Assert.Equal(_node.Data[..8], data);
        }

        await using (var c = await RawNbdClient.HandshakeAsync(SocketPath))
        {
            await c.SendOptionAsync(C.OptExportName, "nope"u8.ToArray());
            Assert.True(await c.IsClosedByServerAsync());
        }
    }

    [Fact]
    public async Task StructuredReadSendsHolesAndDataThatReassemble()
    {
        await using var c = await OpenAsync();
        await c.SendRequestAsync(C.CmdRead, 9, 0, 128 * 1024);
        var chunks = await c.ReadStructuredReplyAsync();

        var image = new byte[128 * 1024];
        Array.Fill(image, (byte)0xEE);
        var kinds = new List<ushort>();
        foreach (var (h, p) in chunks)
        {
            var at = (int)BinaryPrimitives.ReadUInt64BigEndian(p);
            kinds.Add(h.Type);
            if (h.Type == C.ReplyTypeOffsetHole)
            {
                image.AsSpan(at, (int)BinaryPrimitives.ReadUInt32BigEndian(p.AsSpan(8))).Clear();
            }
            else
            {
                Assert.Equal(C.ReplyTypeOffsetData, h.Type);
                p.AsSpan(8).CopyTo(image.AsSpan(at));
            }
        }

        Assert.Equal(_node.Data[..(128 * 1024)], image);
        Assert.Equal([C.ReplyTypeOffsetData, C.ReplyTypeOffsetHole, C.ReplyTypeOffsetData, C.ReplyTypeOffsetHole], kinds);

        await c.SendRequestAsync(C.CmdRead, 10, 0, 128 * 1024, C.CmdFlagDf);
        var single = Assert.Single(await c.ReadStructuredReplyAsync());
        Assert.Equal(C.ReplyTypeOffsetData, single.Header.Type);
        Assert.Equal(_node.Data[..(128 * 1024)], single.Payload[8..]);
    }

    [Fact]
    public async Task WritesFlushTrimAndZeroesReachTheNode()
    {
        await using var c = await OpenAsync(structured: false);
        var payload = Enumerable.Range(0, 5000).Select(i => (byte)i).ToArray();
        await c.SendRequestAsync(C.CmdWrite, 1, 300_000, (ulong)payload.Length, C.CmdFlagFua, payload);
        Assert.Equal(0u, (await c.ReadSimpleReplyAsync()).Error);
        Assert.Equal(payload, _node.Data[300_000..305_000]);

        await c.SendRequestAsync(C.CmdWriteZeroes, 2, 300_000, 1000, C.CmdFlagNoHole);
        Assert.Equal(0u, (await c.ReadSimpleReplyAsync()).Error);
        Assert.All(_node.Data[300_000..301_000], b => Assert.Equal(0, b));
        Assert.Equal(payload[1000..], _node.Data[301_000..305_000]);

        await c.SendRequestAsync(C.CmdFlush, 3, 0, 0);
        Assert.Equal(0u, (await c.ReadSimpleReplyAsync()).Error);
        await c.SendRequestAsync(C.CmdTrim, 4, 0, 4096);
        Assert.Equal(0u, (await c.ReadSimpleReplyAsync()).Error);
        await c.SendRequestAsync(C.CmdCache, 5, 0, 4096);
        Assert.Equal(0u, (await c.ReadSimpleReplyAsync()).Error);
        await c.SendRequestAsync(C.CmdWriteZeroes, 6, 0, 4096, C.CmdFlagFastZero);
        Assert.Equal(0u, (await c.ReadSimpleReplyAsync()).Error);
    }

    public static TheoryData<ushort, ushort, ulong, ulong, bool, uint> BadRequests => new()
    {
        // type, flags, offset, length, structured, expected error
        { C.CmdRead, 0, Size - 10, 20, true, C.EINVAL },
        { C.CmdRead, 0, Size + 4096, 1, false, C.EINVAL },
        { C.CmdWriteZeroes, 0, Size - 10, 20, true, C.ENOSPC },
        { C.CmdTrim, 0, Size, 1, false, C.ENOSPC },
        { C.CmdBlockStatus, 0, 0, 4096, true, C.EINVAL },
        { C.CmdBlockStatus, 0, 0, 0, true, C.EINVAL },
        { C.CmdWriteZeroes, 0, Size + 1, 0, false, C.ENOSPC },
        { C.CmdRead, 0, 0, (32 << 20) + 1, true, C.EOVERFLOW },
        { C.CmdRead, 0, 0, (32 << 20) + 1, false, C.EINVAL },
        { 42, 0, 0, 512, true, C.EINVAL },
        { C.CmdRead, C.CmdFlagReqOne, 0, 512, true, C.EINVAL },
        { C.CmdRead, C.CmdFlagDf, 0, 512, false, C.EINVAL },
        { C.CmdFlush, 0x4000, 0, 0, false, C.EINVAL },
    };

    /// <summary>As in QEMU: an empty request succeeds; an empty read gets one NONE chunk marked done.</summary>
    [Theory]
    [InlineData(C.CmdRead, true)]
    [InlineData(C.CmdRead, false)]
    [InlineData(C.CmdWriteZeroes, true)]
    [InlineData(C.CmdTrim, false)]
    [InlineData(C.CmdCache, true)]
    public async Task ZeroLengthRequestsSucceed(ushort type, bool structured)
    {
        await using var c = await OpenAsync(structured: structured);
        await c.SendRequestAsync(type, 5, Size, 0);
        if (structured && type == C.CmdRead)
        {
            var chunk = Assert.Single(await c.ReadStructuredReplyAsync());
            Assert.Equal((C.ReplyTypeNone, C.ReplyFlagDone, 5ul), (chunk.Header.Type, chunk.Header.Flags, chunk.Header.Cookie));
        }
        else
        {
            var (error, cookie, _) = await c.ReadSimpleReplyAsync();
            Assert.Equal((0u, 5ul), (error, cookie));
        }
    }

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task BadRequestsGetTheirErrorAndTheConnectionGoesOn(ushort type, ushort flags, ulong offset, ulong length, bool structured, uint expected)
    {
        await using var c = await OpenAsync(structured: structured);
        await c.SendRequestAsync(type, 77, offset, length, flags);
        if (structured)
        {
            var chunks = await c.ReadStructuredReplyAsync();
            Assert.Equal(77ul, chunks[0].Header.Cookie);
            Assert.Equal(expected, RawNbdClient.ErrorOf(chunks));
        }
        else
        {
            var (error, cookie, _) = await c.ReadSimpleReplyAsync();
            Assert.Equal((expected, 77ul), (error, cookie));
        }

        await c.SendRequestAsync(C.CmdFlush, 78, 0, 0);
        var (flushError, flushCookie, _) = await c.ReadSimpleReplyAsync();
        Assert.Equal((0u, 78ul), (flushError, flushCookie));
    }

    [Theory]
    [InlineData(true, C.EOVERFLOW)]
    [InlineData(false, C.EINVAL)]
    public async Task OversizeAndOutOfRangeWritePayloadsAreSkippedKeepingFraming(bool structured, uint oversizeError)
    {
        await using var c = await OpenAsync(structured: structured);
        var big = new byte[(32 << 20) + 512];
        await c.SendRequestAsync(C.CmdWrite, 1, 0, (ulong)big.Length, payload: big);
        await c.SendRequestAsync(C.CmdWrite, 2, Size - 2, 4, payload: [1, 2, 3, 4]);
        await c.SendRequestAsync(C.CmdWrite, 3, 0, 4, payload: [9, 9, 9, 9]);
        var errors = new Dictionary<ulong, uint>();
        for (var i = 0; i < 3; i++)
        {
            var (cookie, error) = await c.ReadOutcomeAsync();
            errors[cookie] = error;
        }

        Assert.Equal(oversizeError, errors[1]);
        Assert.Equal(C.ENOSPC, errors[2]);
        Assert.Equal(0u, errors[3]);
        Assert.Equal([9, 9, 9, 9], _node.Data[..4]);
    }

    [Fact]
    public async Task BrokenFramingClosesOnlyThatConnection()
    {
        await using var other = await OpenAsync();
        await using (var c = await OpenAsync())
        {
            await c.SendAsync(new byte[28]);
            Assert.True(await c.IsClosedByServerAsync());
        }

        await using (var c = await RawNbdClient.HandshakeAsync(SocketPath))
        {
            await c.SendAsync("GARBAGE!GARBAGE!GARBAGE!"u8.ToArray());
            Assert.True(await c.IsClosedByServerAsync());
        }

        await using (var c = await RawNbdClient.HandshakeAsync(SocketPath))
        {
            var header = new byte[16];
            NbdOptionCodec.WriteOptionHeader(header, C.OptGo, uint.MaxValue);
            await c.SendAsync(header);
            Assert.True(await c.IsClosedByServerAsync());
        }

        await using (var c = await OpenAsync())
        {
            await c.SendRequestAsync(C.CmdWrite, 1, 0, 4096, payload: new byte[100]);
            await c.DisposeAsync();
        }

        await other.SendRequestAsync(C.CmdRead, 1, 0, 16, C.CmdFlagDf);
        Assert.Equal(_node.Data[..16], (await other.ReadStructuredReplyAsync())[0].Payload[8..]);
    }

    [Fact]
    public async Task RequestsCompleteOutOfOrder()
    {
        _node.GatedOffset = 0;
        await using var c = await OpenAsync();
        await c.SendRequestAsync(C.CmdRead, 1, 0, 4096, C.CmdFlagDf);
        await c.SendRequestAsync(C.CmdRead, 2, 4096, 4096, C.CmdFlagDf);
        var first = await c.ReadStructuredReplyAsync();
        Assert.Equal(2ul, first[0].Header.Cookie);
        _node.Gate.SetResult();
        var second = await c.ReadStructuredReplyAsync();
        Assert.Equal(1ul, second[0].Header.Cookie);
        Assert.Equal(_node.Data[..4096], second[0].Payload[8..]);
    }

    [Fact]
    public async Task ManyConcurrentRequestsAllGetTheirOwnReply()
    {
        await using var c = await OpenAsync();
        const int count = 300;
        var send = Task.Run(async () =>
        {
            for (var i = 0; i < count; i++)
            {
                await c.SendRequestAsync(C.CmdRead, (ulong)i, (ulong)(i % 200) * 512, 512, C.CmdFlagDf);
            }
        });
        var seen = new HashSet<ulong>();
        for (var i = 0; i < count; i++)
        {
            var chunk = Assert.Single(await c.ReadStructuredReplyAsync());
            var cookie = chunk.Header.Cookie;
            Assert.True(seen.Add(cookie));
            Assert.Equal(_node.Data.AsSpan((int)(cookie % 200) * 512, 512).ToArray(), chunk.Payload[8..]);
        }

        await send;
    }

    [Fact]
    public async Task BlockStatusReportsAllocationAndDepth()
    {
        await using var c = await OpenAsync(contexts: ["base:allocation", "qemu:allocation-depth"]);
        await c.SendRequestAsync(C.CmdBlockStatus, 1, 0, 131072);
        var chunks = await c.ReadStructuredReplyAsync();
        Assert.Equal(2, chunks.Count);
        Assert.All(chunks, ch => Assert.Equal(C.ReplyTypeBlockStatus, ch.Header.Type));
        var allocation = Descriptors(chunks[0].Payload, false);
        Assert.Equal([(8192ul, 0u), (57344ul, C.StateHole | C.StateZero), (4096ul, 0u), (61440ul, C.StateHole | C.StateZero)], allocation);
        Assert.Equal([(131072ul, 1u)], Descriptors(chunks[1].Payload, false));

        await c.SendRequestAsync(C.CmdBlockStatus, 2, 8192, 131072, C.CmdFlagReqOne);
        chunks = await c.ReadStructuredReplyAsync();
        Assert.Equal([(57344ul, C.StateHole | C.StateZero)], Descriptors(chunks[0].Payload, false));
    }

    [Fact]
    public async Task ExtendedHeadersCarryReadsWritesAndWideBlockStatus()
    {
        await using var c = await OpenAsync(extended: true, contexts: ["base:allocation"]);
        await c.SendRequestAsync(C.CmdRead, 1, 0, 16, C.CmdFlagDf);
        var (header, payload) = Assert.Single(await c.ReadStructuredReplyAsync());
        Assert.Equal((C.ReplyTypeOffsetData, 0ul), (header.Type, header.Offset));
        Assert.Equal(_node.Data[..16], payload[8..]);

        await c.SendRequestAsync(C.CmdWrite, 2, 512, 4, payload: [5, 6, 7, 8]);
        (header, _) = Assert.Single(await c.ReadStructuredReplyAsync());
        Assert.Equal((C.ReplyTypeNone, 512ul), (header.Type, header.Offset));
        Assert.Equal([5, 6, 7, 8], _node.Data[512..516]);

        await c.SendRequestAsync(C.CmdBlockStatus, 3, 0, Size);
        (header, payload) = Assert.Single(await c.ReadStructuredReplyAsync());
        Assert.Equal(C.ReplyTypeBlockStatusExt, header.Type);
        Assert.Equal(4u, BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(4)));
        Assert.Equal((8192ul, 0u), Descriptors(payload, true)[0]);

        await c.SendRequestAsync(C.CmdRead, 4, Size, 1);
        Assert.Equal(C.EINVAL, RawNbdClient.ErrorOf(await c.ReadStructuredReplyAsync()));
    }

    [Fact]
    public async Task MetaContextListingAndSelection()
    {
        await using var c = await RawNbdClient.HandshakeAsync(SocketPath);
        await c.SendOptionAsync(C.OptListMetaContext, NbdOptionCodec.MetaContextRequest("disk", []));
        Assert.Equal(C.RepErrInvalid, (await c.ReadOptionReplyAsync()).Type);
        Assert.Equal(C.RepAck, await c.SimpleOptionAsync(C.OptStructuredReply));
        Assert.Equal(C.RepErrInvalid, await c.SimpleOptionAsync(C.OptStructuredReply));

        async Task<List<string>> Query(uint option, string export, params string[] queries)
        {
            await c.SendOptionAsync(option, NbdOptionCodec.MetaContextRequest(export, queries));
            var names = new List<string>();
            while (true)
            {
                var (_, type, data) = await c.ReadOptionReplyAsync();
                if (type != C.RepMetaContext)
                {
                    names.Add($"#{NbdConstants.ReplyName(type)}");
                    return names;
                }

                names.Add(System.Text.Encoding.UTF8.GetString(data, 4, data.Length - 4));
            }
        }

        Assert.Equal(["base:allocation", "qemu:allocation-depth", "#ACK"], await Query(C.OptListMetaContext, "disk"));
        Assert.Equal(["base:allocation", "#ACK"], await Query(C.OptListMetaContext, "ro"));
        Assert.Equal(["#ACK"], await Query(C.OptSetMetaContext, "ro", "qemu:allocation-depth"));
        Assert.Equal(["qemu:allocation-depth", "#ACK"], await Query(C.OptListMetaContext, "disk", "qemu:"));
        Assert.Equal(["#ACK"], await Query(C.OptSetMetaContext, "disk", "qemu:", "base:nothing", "other:x"));
        Assert.Equal(["#ERR_UNKNOWN"], await Query(C.OptSetMetaContext, "nope", "base:allocation"));
        Assert.Equal(["base:allocation", "#ACK"], await Query(C.OptSetMetaContext, "disk", "base:allocation"));
    }

    [Fact]
    public async Task AllocationDepthFollowsTheBackingChain()
    {
        var baseData = new byte[Size];
        baseData[0] = 1;
        var top = new byte[Size];
        top[4096] = 2;
        var backing = new SparseNode("base", baseData);
        var overlay = new SparseNode("top", top, backing);
        _server.AddExport(new NbdExportOptions { Name = "chain", Node = overlay, AllocationDepth = true });
        await using var c = await OpenAsync("chain", contexts: ["qemu:allocation-depth", "base:allocation"]);
        await c.SendRequestAsync(C.CmdBlockStatus, 1, 0, 12288);
        var chunks = await c.ReadStructuredReplyAsync();
        Assert.Equal([(4096ul, 2u), (4096ul, 1u), (4096ul, 2u)], Descriptors(chunks[0].Payload, false));
        Assert.Equal([(8192ul, 0u), (4096ul, C.StateHole | C.StateZero)], Descriptors(chunks[1].Payload, false));
    }

    [Fact]
    public async Task ClientLeavingWithRequestsInFlightHarmsNothing()
    {
        _node.GatedOffset = 0;
        var c = await OpenAsync();
        for (var i = 0; i < 40; i++)
        {
            await c.SendRequestAsync(C.CmdRead, (ulong)i, 0, 4096);
        }

        await c.DisposeAsync();
        _node.Gate.SetResult();
        await WaitUntil(() => _server.ConnectionCount == 0);
        await using var d = await OpenAsync();
        await d.SendRequestAsync(C.CmdRead, 1, 0, 8, C.CmdFlagDf);
        Assert.Equal(_node.Data[..8], (await d.ReadStructuredReplyAsync())[0].Payload[8..]);
    }

    [Fact]
    public async Task RemovingExportsSafelyAndHard()
    {
        var e = await Assert.ThrowsAsync<BlockException>(() => _server.RemoveExportAsync("nope", false).AsTask());
        Assert.Equal(Errno.ENOENT, e.Errno);
        await using var c = await OpenAsync();
        e = await Assert.ThrowsAsync<BlockException>(() => _server.RemoveExportAsync("disk", false).AsTask());
        Assert.Equal(Errno.EBUSY, e.Errno);
        await _server.RemoveExportAsync("ro", false);
        await _server.RemoveExportAsync("disk", true);
        Assert.True(await c.IsClosedByServerAsync());
        Assert.Empty(_server.Exports);
        Assert.Equal(0, _node.UserCount);
    }

    [Fact]
    public async Task AddingExportsChecksNameAndWritability()
    {
        var e = Assert.Throws<BlockException>(() => _server.AddExport(new NbdExportOptions { Name = "disk", Node = _node }));
        Assert.Equal(Errno.EEXIST, e.Errno);
        e = Assert.Throws<BlockException>(() => _server.AddExport(new NbdExportOptions { Name = "x", Node = new MemoryNode("m", 4096, readOnly: true), Writable = true }));
        Assert.Equal(Errno.EPERM, e.Errno);
        _server.AddExport(new NbdExportOptions { Name = string.Empty, Node = new MemoryNode("m", 4096) });
        await using var c = await RawNbdClient.HandshakeAsync(SocketPath);
        Assert.Equal(4096ul, (await c.GoAsync(string.Empty)).Size);
    }

    [Fact]
    public async Task ConnectionsBeyondTheLimitWaitUntilOneEnds()
    {
        await _server.DisposeAsync();
        Assert.False(File.Exists(SocketPath));
        _server = NewServer(maxConnections: 1);
        _server.Start();
        _server.AddExport(new NbdExportOptions { Name = "disk", Node = _node });
        var first = await RawNbdClient.HandshakeAsync(SocketPath);
        var second = RawNbdClient.HandshakeAsync(SocketPath);
        await Task.Delay(300);
        Assert.False(second.IsCompleted, "the second client was greeted while the first held the only slot");
        Assert.Equal((ulong)Size, (await first.GoAsync("disk")).Size);
        await first.DisposeAsync();
        await using var c = await second.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal((ulong)Size, (await c.GoAsync("disk")).Size);
    }

    [Fact]
    public async Task BindFailureIsReportedLikeQemu()
    {
        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        taken.Listen();
        await using var server = new NbdServer(new NbdServerOptions { EndPoints = [taken.LocalEndPoint!] });
        var e = Assert.Throws<BlockException>(server.Start);
        Assert.Equal("Failed to bind socket: Address already in use", e.Message);
    }

    [Fact]
    public async Task ServesOverTcp()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var endPoint = (IPEndPoint)probe.LocalEndPoint!;
        probe.Dispose();
        await using var server = new NbdServer(new NbdServerOptions { EndPoints = [endPoint] });
        server.Start();
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(endPoint);
        var greeting = new byte[18];
        Assert.Equal(18, await s.ReceiveAsync(greeting, SocketFlags.None));
        Assert.Equal(C.InitMagic, BinaryPrimitives.ReadUInt64BigEndian(greeting));
    }

    [Fact]
    public async Task FastZeroThatCannotBeFastFailsWithEnotsupAndDataStays()
    {
        _node.RefuseZeroes = true;
        await using var c = await OpenAsync(structured: false);
        await c.SendRequestAsync(C.CmdWriteZeroes, 1, 0, 4096, C.CmdFlagFastZero);
        Assert.Equal(C.ENOTSUP, (await c.ReadSimpleReplyAsync()).Error);
        Assert.NotEqual(0, _node.Data[0] | _node.Data[1] | _node.Data[2]);

        await c.SendRequestAsync(C.CmdWriteZeroes, 2, 0, 4096);
        Assert.Equal(0u, (await c.ReadSimpleReplyAsync()).Error);
        Assert.All(_node.Data[..4096], b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task FastZeroIsNotOfferedByNodesThatCannotDoIt()
    {
        _server.AddExport(new NbdExportOptions { Name = "slow", Node = new SlowZeroNode(), Writable = true });
        await using var c = await RawNbdClient.HandshakeAsync(SocketPath);
        var (_, flags) = await c.GoAsync("slow");
        Assert.Equal(0, flags & C.FlagSendFastZero);
        Assert.NotEqual(0, flags & C.FlagSendWriteZeroes);
        await c.SendRequestAsync(C.CmdWriteZeroes, 1, 0, 512, C.CmdFlagFastZero);
        Assert.Equal(C.EINVAL, (await c.ReadSimpleReplyAsync()).Error);
    }

    [Fact]
    public async Task RequestsRunOnTheExportScheduler()
    {
        var pair = new ConcurrentExclusiveSchedulerPair();
        _server.AddExport(new NbdExportOptions { Name = "io", Node = _node, Scheduler = pair.ExclusiveScheduler });
        await using var c = await OpenAsync("io");
        await c.SendRequestAsync(C.CmdRead, 1, 0, 512, C.CmdFlagDf);
        await c.ReadStructuredReplyAsync();
        Assert.Same(pair.ExclusiveScheduler, _node.LastReadScheduler);
    }

    [Theory]
    [InlineData("local", 256 * 1024, 32)]
    [InlineData("local", 4096, 60)]
    [InlineData("local", 2 << 20, 4)]
    [InlineData("remote", 256 * 1024, 60)]
    [InlineData("remote", 2 << 20, 8)]
    [InlineData("over-remote", 256 * 1024, 60)]
    [InlineData("queue-16", 256 * 1024, 16)]
    [InlineData("queue-16", 4096, 16)]
    [InlineData("over-queue-16", 4096, 16)]
    public async Task RequestsInFlightFollowTheBudgetAndWhatTheStorageFindsWorthQueuing(string storage, int length, int expected)
    {
        // 60 reads: a local export holds as many as fit in 8 MiB (all 60 small ones: up to 64 requests
        // a connection), an export of remote storage as many as fit in 16 MiB, and storage that finds
        // only 16 requests worth queuing gets 16 at most. A node over such storage (a format or filter
        // node over its file child) counts as it does.
        const int reads = 60;
        var remote = storage is "remote" or "queue-16";
        var worth = storage.EndsWith("queue-16", StringComparison.Ordinal) ? 16 : 0;
        var node = storage.StartsWith("over-", StringComparison.Ordinal)
            ? new HeldReadsNode(false, 0, new HeldReadsNode(true, worth))
            : new HeldReadsNode(remote, worth);
        _server.AddExport(new NbdExportOptions { Name = "held", Node = node });
        await using var c = await OpenAsync("held");
        for (var i = 0; i < reads; i++)
        {
            await c.SendRequestAsync(C.CmdRead, (ulong)i, (ulong)(i * (long)length % node.Length), (uint)length, C.CmdFlagDf);
        }

        await WaitUntil(() => node.Waiting == expected);
        await Task.Delay(200);
        Assert.Equal(expected, node.Waiting);

        node.Release();
        for (var i = 0; i < reads; i++)
        {
            Assert.Equal(0u, (await c.ReadStructuredReplyAsync())[^1].Header.Error);
        }
    }

    /// <summary>Reads wait until <see cref="Release"/>; counts how many are waiting.</summary>
    private sealed class HeldReadsNode : BlockNode
    {
        private readonly bool _remote;
        private readonly int _worth;

        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _waiting;

        public override string DriverName => "held";

        public override long Length => 16 << 20;

        public HeldReadsNode(bool remote, int worth = 0, BlockNode? file = null)
            : base("held", true)
        {
            _remote = remote;
            _worth = worth;
            if (file is not null)
            {
                AttachChild("file", ChildRole.File, file);
            }
        }

        public override bool IsRemote => _remote || base.IsRemote;

        public override int RequestsWorthQueuing => _worth > 0 ? _worth : base.RequestsWorthQueuing;

        public int Waiting => Volatile.Read(ref _waiting);

        public void Release() => _released.TrySetResult();

        protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
        {
            Interlocked.Increment(ref _waiting);
            await _released.Task;
        }

        protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags) => ValueTask.CompletedTask;
    }

    private sealed class SlowZeroNode : BlockNode
    {
        public SlowZeroNode()
            : base("slow", false)
        {
            Length = 4096;
        }

        public override string DriverName => "slow";

        protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer) => ValueTask.CompletedTask;

        protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags) => ValueTask.CompletedTask;
    }

    private static List<(ulong Length, uint Flags)> Descriptors(byte[] payload, bool extended)
    {
        var list = new List<(ulong, uint)>();
        var at = extended ? 8 : 4;
        while (at < payload.Length)
        {
            if (extended)
            {
                list.Add((BinaryPrimitives.ReadUInt64BigEndian(payload.AsSpan(at)), (uint)BinaryPrimitives.ReadUInt64BigEndian(payload.AsSpan(at + 8))));
                at += 16;
            }
            else
            {
                list.Add((BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(at)), BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(at + 4))));
                at += 8;
            }
        }

        return list;
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        for (var i = 0; i < 500 && !condition(); i++)
        {
            await Task.Delay(10);
        }

        Assert.True(condition());
    }
}
