using System.Buffers.Binary;
using System.Net.Sockets;
using ExportServer.Nbd.Protocol;
using C = ExportServer.Nbd.Protocol.NbdConstants;

namespace ExportServer.UnitTests.NbdClientDriver;

/// <summary>
/// A one-connection NBD server that speaks only what a test scripts: an old-fashioned handshake that refuses
/// every option with ERR_UNSUP (so the client falls back to EXPORT_NAME and simple replies), then hands
/// the raw socket to the test, which reads requests and sends whatever replies it likes.
/// </summary>
internal sealed class ScriptedServer : IDisposable
{
    private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);

    public ScriptedServer(string socketPath, ulong size)
    {
        _listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        _listener.Listen();
        Connection = AcceptAsync(size);
    }

    /// <summary>The socket after the handshake, in transmission.</summary>
    public Task<Socket> Connection { get; }

    private async Task<Socket> AcceptAsync(ulong size)
    {
        var s = await _listener.AcceptAsync();
        var greeting = new byte[NbdOptionCodec.GreetingSize];
        NbdOptionCodec.WriteGreeting(greeting, C.FlagFixedNewstyle | C.FlagNoZeroes);
        await s.SendAsync(greeting);
        await ReadAsync(s, 4);
        while (true)
        {
            NbdOptionCodec.TryParseOptionHeader(await ReadAsync(s, C.OptionHeaderSize), out var option);
            await ReadAsync(s, (int)option.Length);
            if (option.Option == C.OptExportName)
            {
                var reply = new byte[10];
                NbdOptionCodec.WriteExportNameReply(reply, size, C.FlagHasFlags | C.FlagSendFlush, noZeroes: true);
                await s.SendAsync(reply);
                return s;
            }

            var refusal = new byte[C.OptionReplyHeaderSize];
            NbdOptionCodec.WriteOptionReplyHeader(refusal, option.Option, C.RepErrUnsup, 0);
            await s.SendAsync(refusal);
        }
    }

    /// <summary>Reads one compact request header; the cookie and command are what a test replies to.</summary>
    public static async Task<NbdRequest> ReadRequestAsync(Socket s)
    {
        NbdRequestCodec.TryParse(await ReadAsync(s, C.RequestHeaderSize), extended: false, out var request);
        return request;
    }

    public static async Task SendSimpleReplyAsync(Socket s, uint error, ulong cookie, byte[]? data = null)
    {
        var reply = new byte[C.SimpleReplySize + (data?.Length ?? 0)];
        NbdReplyCodec.WriteSimple(reply, error, cookie);
        data?.CopyTo(reply, C.SimpleReplySize);
        await s.SendAsync(reply);
    }

    private static async Task<byte[]> ReadAsync(Socket s, int count)
    {
        var buffer = new byte[count];
        for (var at = 0; at < count;)
        {
            var n = await s.ReceiveAsync(buffer.AsMemory(at));
            at += n > 0 ? n : throw new EndOfStreamException();
        }

        return buffer;
    }

    public void Dispose()
    {
        _listener.Dispose();
        if (Connection.IsCompletedSuccessfully)
        {
            Connection.Result.Dispose();
        }
    }

    /// <summary>Big-endian u64 at the start of a buffer, for building payloads.</summary>
    public static byte[] U64(ulong value)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, value);
        return b;
    }
}
