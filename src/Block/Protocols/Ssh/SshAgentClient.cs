using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace ExportServer.Block.Protocols.Ssh;

/// <summary>
/// The client half of the ssh-agent protocol (draft-miller-ssh-agent): list the identities the agent
/// holds and ask it to sign with one of them. Each call is one request and one reply over the Unix
/// socket named by SSH_AUTH_SOCK; the private keys never leave the agent.
/// </summary>
internal sealed class SshAgentClient : IDisposable
{
    private const byte AgentFailure = 5;
    private const byte RequestIdentities = 11;
    private const byte IdentitiesAnswer = 12;
    private const byte SignRequest = 13;
    private const byte SignResponse = 14;

    /// <summary>An agent message is at most 256 KiB (the reference agent's limit).</summary>
    private const int MaxMessage = 256 * 1024;

    /// <summary>Sign-request flags that select the RSA signature hash (RFC 8332).</summary>
    public const uint RsaSha2_256 = 2;
    public const uint RsaSha2_512 = 4;

    private readonly Socket _socket;
    private readonly Lock _lock = new();

    private SshAgentClient(Socket socket)
    {
        _socket = socket;
    }

    /// <summary>Connects to the agent at SSH_AUTH_SOCK, or returns null when no agent is set or it does not answer.</summary>
    public static SshAgentClient? TryConnect()
    {
        var path = Environment.GetEnvironmentVariable("SSH_AUTH_SOCK");
        if (string.IsNullOrEmpty(path))
        {
            return null;
        }

        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(path));
            return new SshAgentClient(socket);
        }
        catch (SocketException)
        {
            socket.Dispose();
            return null;
        }
    }

    /// <summary>The public key blobs (RFC 4253 encoding) of the identities the agent holds, with their comments.</summary>
    public IReadOnlyList<(byte[] KeyBlob, string Comment)> ListIdentities()
    {
        var reply = Call([RequestIdentities], IdentitiesAnswer);
        ReadOnlySpan<byte> span = reply.AsSpan(1);
        var count = ReadUInt32(ref span);
        var keys = new List<(byte[], string)>();
        for (var i = 0; i < count; i++)
        {
            var blob = ReadString(ref span).ToArray();
            var comment = Encoding.UTF8.GetString(ReadString(ref span));
            keys.Add((blob, comment));
        }

        return keys;
    }

    /// <summary>The agent's signature of <paramref name="data"/> (the "string algorithm, string signature" blob).</summary>
    public byte[] Sign(byte[] keyBlob, byte[] data, uint flags)
    {
        var request = new byte[1 + 4 + keyBlob.Length + 4 + data.Length + 4];
        var span = request.AsSpan();
        span[0] = SignRequest;
        span = span[1..];
        WriteString(ref span, keyBlob);
        WriteString(ref span, data);
        BinaryPrimitives.WriteUInt32BigEndian(span, flags);
        ReadOnlySpan<byte> reply = Call(request, SignResponse).AsSpan(1);
        return ReadString(ref reply).ToArray();
    }

    public void Dispose() => _socket.Dispose();

    private byte[] Call(ReadOnlySpan<byte> request, byte expected)
    {
        lock (_lock)
        {
            Span<byte> length = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(length, (uint)request.Length);
            _socket.Send(length);
            _socket.Send(request);
            ReceiveExactly(length);
            var size = BinaryPrimitives.ReadUInt32BigEndian(length);
            if (size is 0 or > MaxMessage)
            {
                throw new InvalidDataException($"ssh-agent: reply of {size} bytes");
            }

            var reply = new byte[size];
            ReceiveExactly(reply);
            if (reply[0] == AgentFailure)
            {
                throw new InvalidOperationException("ssh-agent refused the request");
            }

            return reply[0] == expected ? reply : throw new InvalidDataException($"ssh-agent: unexpected reply type {reply[0]}");
        }
    }

    private void ReceiveExactly(Span<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            var n = _socket.Receive(buffer);
            if (n == 0)
            {
                throw new InvalidDataException("ssh-agent closed the connection");
            }

            buffer = buffer[n..];
        }
    }

    private static uint ReadUInt32(ref ReadOnlySpan<byte> span)
    {
        if (span.Length < 4)
        {
            throw new InvalidDataException("ssh-agent: truncated reply");
        }

        var v = BinaryPrimitives.ReadUInt32BigEndian(span);
        span = span[4..];
        return v;
    }

    private static ReadOnlySpan<byte> ReadString(ref ReadOnlySpan<byte> span)
    {
        var length = ReadUInt32(ref span);
        if (length > span.Length)
        {
            throw new InvalidDataException("ssh-agent: truncated reply");
        }

        var s = span[..(int)length];
        span = span[(int)length..];
        return s;
    }

    private static void WriteString(ref Span<byte> span, ReadOnlySpan<byte> value)
    {
        BinaryPrimitives.WriteUInt32BigEndian(span, (uint)value.Length);
        value.CopyTo(span[4..]);
        span = span[(4 + value.Length)..];
    }

    /// <summary>The key type at the start of a public key blob ("ssh-ed25519", "ssh-rsa", …).</summary>
    public static string KeyType(ReadOnlySpan<byte> keyBlob) => Encoding.ASCII.GetString(ReadString(ref keyBlob));
}
