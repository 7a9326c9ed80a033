using System.Buffers.Binary;
using System.Net.Sockets;
using ExportServer.Nbd.Protocol;
using Xunit;

namespace ExportServer.UnitTests.Nbd;

/// <summary>A deliberately small NBD client over a raw socket, able to send anything, including bad input.</summary>
internal sealed class RawNbdClient : IAsyncDisposable
{
    private readonly Socket _socket;

    private RawNbdClient(Socket socket)
    {
        _socket = socket;
    }

    public bool Extended { get; set; }

    public static async Task<RawNbdClient> ConnectAsync(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
        return new RawNbdClient(socket);
    }

    /// <summary>Connects, checks the greeting and sends the client flags (fixed newstyle + no zeroes by default).</summary>
    public static async Task<RawNbdClient> HandshakeAsync(string path, uint clientFlags = 3)
    {
        var c = await ConnectAsync(path);
        var greeting = await c.ReadExactAsync(18);
        Assert.Equal(NbdConstants.InitMagic, BinaryPrimitives.ReadUInt64BigEndian(greeting));
        Assert.Equal(NbdConstants.OptionMagic, BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8)));
        Assert.Equal(NbdConstants.FlagFixedNewstyle | NbdConstants.FlagNoZeroes, BinaryPrimitives.ReadUInt16BigEndian(greeting.AsSpan(16)));
        var flags = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(flags, clientFlags);
        await c.SendAsync(flags);
        return c;
    }

    public Task SendAsync(byte[] data) => _socket.SendAsync(data.AsMemory(), SocketFlags.None).AsTask();

    public async Task<byte[]> ReadExactAsync(int n)
    {
        var data = new byte[n];
        var at = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (at < n)
        {
            var r = await _socket.ReceiveAsync(data.AsMemory(at), SocketFlags.None, timeout.Token);
            if (r == 0)
            {
                throw new EndOfStreamException();
            }

            at += r;
        }

        return data;
    }

    /// <summary>True when the server closed the connection (EOF or reset) within the timeout.</summary>
    public async Task<bool> IsClosedByServerAsync()
    {
        var one = new byte[1];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            while (true)
            {
                if (await _socket.ReceiveAsync(one, SocketFlags.None, timeout.Token) == 0)
                {
                    return true;
                }
            }
        }
        catch (SocketException)
        {
            return true;
        }
    }

    public async Task SendOptionAsync(uint option, byte[] data)
    {
        var message = new byte[16 + data.Length];
        NbdOptionCodec.WriteOptionHeader(message, option, (uint)data.Length);
        data.CopyTo(message, 16);
        await SendAsync(message);
    }

    public async Task<(uint Option, uint Type, byte[] Data)> ReadOptionReplyAsync()
    {
        var h = await ReadExactAsync(20);
        Assert.Equal(NbdConstants.OptionReplyMagic, BinaryPrimitives.ReadUInt64BigEndian(h));
        var length = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16));
        return (BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(8)), BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(12)), await ReadExactAsync((int)length));
    }

    /// <summary>Sends an option that takes no data and returns the reply type.</summary>
    public async Task<uint> SimpleOptionAsync(uint option)
    {
        await SendOptionAsync(option, []);
        return (await ReadOptionReplyAsync()).Type;
    }

    /// <summary>INFO or GO; returns every reply up to and including the final one.</summary>
    public async Task<List<(uint Type, byte[] Data)>> InfoAsync(uint option, string name, params ushort[] infos)
    {
        await SendOptionAsync(option, NbdOptionCodec.InfoRequest(name, infos));
        var replies = new List<(uint, byte[])>();
        while (true)
        {
            var (opt, type, data) = await ReadOptionReplyAsync();
            Assert.Equal(option, opt);
            replies.Add((type, data));
            if (type != NbdConstants.RepInfo)
            {
                return replies;
            }
        }
    }

    /// <summary>GO to an export that must exist; returns its size and transmission flags.</summary>
    public async Task<(ulong Size, ushort Flags)> GoAsync(string name)
    {
        var replies = await InfoAsync(NbdConstants.OptGo, name);
        Assert.Equal(NbdConstants.RepAck, replies[^1].Type);
        var export = replies.Single(r => r.Type == NbdConstants.RepInfo && BinaryPrimitives.ReadUInt16BigEndian(r.Data) == NbdConstants.InfoExport).Data;
        return (BinaryPrimitives.ReadUInt64BigEndian(export.AsSpan(2)), BinaryPrimitives.ReadUInt16BigEndian(export.AsSpan(10)));
    }

    public async Task SendRequestAsync(ushort type, ulong cookie, ulong offset, ulong length, ushort flags = 0, byte[]? payload = null)
    {
        var size = NbdRequestCodec.HeaderSize(Extended);
        var message = new byte[size + (payload?.Length ?? 0)];
        NbdRequestCodec.Write(message, Extended, new NbdRequest(flags, type, cookie, offset, length));
        payload?.CopyTo(message, size);
        await SendAsync(message);
    }

    /// <summary>Reads a simple reply header (and <paramref name="dataLength"/> bytes of data when it succeeded).</summary>
    public async Task<(uint Error, ulong Cookie, byte[] Data)> ReadSimpleReplyAsync(int dataLength = 0)
    {
        var (header, _) = await ReadReplyAsync();
        Assert.True(header.IsSimple);
        var data = header.Error == 0 && dataLength > 0 ? await ReadExactAsync(dataLength) : [];
        return (header.Error, header.Cookie, data);
    }

    /// <summary>Reads one reply header; for chunks also their payload.</summary>
    public async Task<(NbdReplyHeader Header, byte[] Payload)> ReadReplyAsync()
    {
        var magic = await ReadExactAsync(4);
        var size = BinaryPrimitives.ReadUInt32BigEndian(magic) switch
        {
            NbdConstants.SimpleReplyMagic => NbdConstants.SimpleReplySize,
            NbdConstants.StructuredReplyMagic => NbdConstants.StructuredReplyHeaderSize,
            NbdConstants.ExtendedReplyMagic => NbdConstants.ExtendedReplyHeaderSize,
            var m => throw new InvalidDataException($"bad reply magic 0x{m:x}"),
        };
        var all = magic.Concat(await ReadExactAsync(size - 4)).ToArray();
        Assert.Equal(NbdParseStatus.Ok, NbdReplyCodec.TryParseHeader(all, out var header, out _));
        var payload = header.IsSimple ? [] : await ReadExactAsync((int)header.Length);
        return (header, payload);
    }

    /// <summary>Reads chunks until the one flagged DONE; all must belong to one cookie.</summary>
    public async Task<List<(NbdReplyHeader Header, byte[] Payload)>> ReadStructuredReplyAsync()
    {
        var chunks = new List<(NbdReplyHeader, byte[])>();
        while (true)
        {
            var chunk = await ReadReplyAsync();
            Assert.False(chunk.Header.IsSimple);
            if (chunks.Count > 0)
            {
                Assert.Equal(chunks[0].Item1.Cookie, chunk.Header.Cookie);
            }

            chunks.Add(chunk);
            if (chunk.Header.IsDone)
            {
                return chunks;
            }
        }
    }

    /// <summary>Cookie and error of a reply without data, simple or structured.</summary>
    public async Task<(ulong Cookie, uint Error)> ReadOutcomeAsync()
    {
        var (header, payload) = await ReadReplyAsync();
        if (header.IsSimple)
        {
            return (header.Cookie, header.Error);
        }

        var chunks = new List<(NbdReplyHeader, byte[])> { (header, payload) };
        while (!chunks[^1].Item1.IsDone)
        {
            chunks.Add(await ReadReplyAsync());
        }

        return (header.Cookie, ErrorOf(chunks));
    }

    /// <summary>The wire error of a structured reply (0 when it has no error chunk).</summary>
    public static uint ErrorOf(List<(NbdReplyHeader Header, byte[] Payload)> chunks) =>
        chunks.Where(c => (c.Header.Type & 0x8000) != 0).Select(c => BinaryPrimitives.ReadUInt32BigEndian(c.Payload)).FirstOrDefault();

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
