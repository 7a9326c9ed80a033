using System.Collections.Concurrent;
using ExportServer.Block.Core;
using Renci.SshNet;
using Renci.SshNet.Common;
using Renci.SshNet.Sftp;

namespace ExportServer.Block.Protocols.Ssh;

/// <summary>
/// A remote file over SFTP. The file is opened several times on one session: each SFTP request takes
/// a handle of its own, so that many reads and writes are in flight at once (SFTP answers each
/// request by id, whatever its handle). A read is cut into pieces of <see cref="ReadLength"/> bytes,
/// each one SSH_FXP_READ on its own handle, all sent at once: the server streams them back to back
/// instead of waiting a round trip per piece. A write, while few are in flight, is cut the same way
/// into SSH_FXP_WRITEs of <see cref="WriteLength"/> bytes sent together; beyond that it goes whole
/// through one handle (see <see cref="WriteCoreAsync"/>). Either way it is acknowledged only once the
/// server has answered all of it. Block status is the default for a protocol (data, allocated): SFTP
/// cannot tell holes. Every call into SSH.NET starts on a pool thread (see
/// <see cref="SshConnection.OffLoop(Action)"/>).
/// </summary>
internal sealed class SshNode : BlockNode
{
    /// <summary>
    /// SFTP requests in flight at once, one per handle: 1 MiB of reads, enough to keep a local
    /// server's disk and cipher busy (OpenSSH's sftp client keeps 64 requests of 32 KiB).
    /// </summary>
    public const int Handles = 32;

    /// <summary>
    /// Bytes asked for by one SSH_FXP_READ: 32 KiB, the length every SFTP server must serve whole.
    /// A handle's stream asks for exactly its buffer length on a fresh position (see
    /// <see cref="ReadPieceAsync"/>), so the client's buffer size is set to make it this.
    /// </summary>
    public const int ReadLength = 32 * 1024;

    /// <summary>
    /// Bytes sent by one SSH_FXP_WRITE: 32 KiB less room for the request's other fields. A handle's
    /// write buffer is the client's buffer size less those fields (length, type, id, handle, offset,
    /// data length); a piece shorter than the buffer stays in it until the flush sends it whole,
    /// where a piece of exactly its length would be sent and awaited by the write itself.
    /// </summary>
    public const int WriteLength = ReadLength - 256;

    /// <summary>
    /// Writes in flight up to which each is cut into pieces sent together (see <see cref="WriteCoreAsync"/>):
    /// four writes of 256 KiB fill the handles.
    /// </summary>
    public const int PipelinedWrites = 4;

    /// <summary>The fields of an SSH_FXP_DATA before its data (length, type, id, data length), which SSH.NET takes off the buffer size.</summary>
    public const int DataHeaderLength = 13;

    private readonly SftpClient _client;
    private readonly ConcurrentBag<SftpFileStream> _idle = [];
    private readonly SemaphoreSlim _available = new(Handles, Handles);
    private readonly SftpFileStream[] _all;
    private readonly string _fileName;
    private int _writesInFlight;

    public SshNode(string nodeName, bool readOnly, SftpClient client, SftpFileStream[] streams, long length, string fileName)
        : base(nodeName, readOnly)
    {
        _client = client;
        _all = streams;
        foreach (var s in streams)
        {
            _idle.Add(s);
        }

        _fileName = fileName;
        Length = length;
        Capabilities = new BlockCapabilities(Truncate: true);
    }

    public override string DriverName => "ssh";

    public override bool IsRemote => true;

    public override string FileName => _fileName;

    /// <summary>
    /// Sends the SFTP reads from a pool thread (SSH.NET sends synchronously; see
    /// <see cref="SshConnection.OffLoop(Action)"/>), then awaits their answers together.
    /// </summary>
    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        await SshConnection.OffLoop(() => ReadPiecesAsync(offset, buffer)).ConfigureAwait(false);
    }

    private Task ReadPiecesAsync(long offset, Memory<byte> buffer) =>
        buffer.Length <= ReadLength
            ? ReadPieceAsync(offset, buffer).AsTask()
            : InPieces(buffer.Length, ReadLength, (start, length) => ReadPieceAsync(offset + start, buffer.Slice(start, length)));

    /// <summary>Starts <paramref name="piece"/> for each piece of at most <paramref name="pieceLength"/> bytes, all before any is awaited.</summary>
    private static Task InPieces(int length, int pieceLength, Func<int, int, ValueTask> piece)
    {
        var pieces = new Task[(length + pieceLength - 1) / pieceLength];
        for (var i = 0; i < pieces.Length; i++)
        {
            var start = i * pieceLength;
            pieces[i] = piece(start, Math.Min(pieceLength, length - start)).AsTask();
        }

        return Task.WhenAll(pieces);
    }

    /// <summary>
    /// One piece of at most <see cref="ReadLength"/> bytes on a handle of its own. The stream starts
    /// afresh (see <see cref="MoveTo"/>), so its read sends exactly one SSH_FXP_READ of
    /// <see cref="ReadLength"/> bytes and nothing more is asked of the server; a short answer is
    /// followed by a fresh read of the rest.
    /// </summary>
    private async ValueTask ReadPieceAsync(long offset, Memory<byte> piece)
    {
        var stream = await TakeAsync().ConfigureAwait(false);
        try
        {
            MoveTo(stream, offset);
            var rest = piece;
            while (!rest.IsEmpty)
            {
                var n = await stream.ReadAsync(rest).ConfigureAwait(false);
                if (n == 0)
                {
                    // Past the end of a file that shrank under us: as QEMU's driver, zeroes.
                    rest.Span.Clear();
                    break;
                }

                rest = rest[n..];
                if (!rest.IsEmpty)
                {
                    MoveTo(stream, offset + (piece.Length - rest.Length));
                }
            }
        }
        catch (Exception e) when (IsSftpFailure(e))
        {
            throw Failure("read", e);
        }
        finally
        {
            Return(stream);
        }
    }

    /// <summary>
    /// Positions a stream with nothing kept from its earlier reads. A stream keeps what its last
    /// request brought beyond the bytes asked for, and a running read-ahead when the new position
    /// follows on: the first could be stale after a write through another handle, the second would
    /// ask the server for data nobody wants. A seek past all it holds drops both.
    /// </summary>
    private static void MoveTo(SftpFileStream stream, long offset)
    {
        stream.Position = stream.Position + ReadLength + 1;
        stream.Position = offset;
    }

    /// <summary>
    /// With few writes in flight, sends the SFTP writes of this one from a pool thread (see
    /// <see cref="ReadCoreAsync"/>) and awaits their answers together: the write completes once the
    /// server has answered every piece, a round trip instead of one per piece. With more, the writes
    /// in flight already hide the round trips, and each goes whole through one handle's synchronous
    /// write and flush (a round trip per SSH_FXP_WRITE): SSH.NET's asynchronous requests took about
    /// twice the processor time per byte of its synchronous ones, measured against a local sshd.
    /// </summary>
    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        try
        {
            if (Interlocked.Increment(ref _writesInFlight) <= PipelinedWrites)
            {
                await SshConnection.OffLoop(() => WritePiecesAsync(offset, buffer)).ConfigureAwait(false);
            }
            else
            {
                await WriteWholeAsync(offset, buffer).ConfigureAwait(false);
            }
        }
        finally
        {
            Interlocked.Decrement(ref _writesInFlight);
        }
    }

    private async ValueTask WriteWholeAsync(long offset, ReadOnlyMemory<byte> buffer)
    {
        var stream = await TakeAsync().ConfigureAwait(false);
        try
        {
            await SshConnection.OffLoop(() =>
            {
                stream.Position = offset;
                stream.Write(buffer.Span);
                stream.Flush();
            }).ConfigureAwait(false);
        }
        catch (Exception e) when (IsSftpFailure(e))
        {
            throw Failure("write", e);
        }
        finally
        {
            Return(stream);
        }
    }

    private Task WritePiecesAsync(long offset, ReadOnlyMemory<byte> buffer) =>
        buffer.Length <= WriteLength
            ? WritePieceAsync(offset, buffer).AsTask()
            : InPieces(buffer.Length, WriteLength, (start, length) => WritePieceAsync(offset + start, buffer.Slice(start, length)));

    /// <summary>
    /// One piece of at most <see cref="WriteLength"/> bytes on a handle of its own: the stream keeps
    /// it in its write buffer, which is longer, and its flush sends it as one SSH_FXP_WRITE and waits
    /// for the server's status. Pieces of other writes go out on other handles meanwhile.
    /// </summary>
    private async ValueTask WritePieceAsync(long offset, ReadOnlyMemory<byte> piece)
    {
        var stream = await TakeAsync().ConfigureAwait(false);
        try
        {
            stream.Position = offset;
            await stream.WriteAsync(piece).ConfigureAwait(false);
            await stream.FlushAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (IsSftpFailure(e))
        {
            throw Failure("write", e);
        }
        finally
        {
            Return(stream);
        }
    }

    /// <summary>
    /// Every write has been answered by the server before it completed, so nothing is left to send.
    /// The server's own fsync (the fsync@openssh.com extension) cannot be asked for: SSH.NET 2026.0
    /// knows no such request, not even internally (its extended requests are posix-rename, statvfs
    /// and hardlink), and its SFTP session, where a new request type would go, is internal. QEMU's
    /// driver likewise succeeds without it when a server lacks the extension.
    /// </summary>
    protected override ValueTask FlushCoreAsync()
    {
        if (!_client.IsConnected)
        {
            throw Failure("flush", new SshConnectionException("Client not connected."));
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>As QEMU's: a file only grows (SSH_FXP_FSETSTAT of its size); shrinking is refused.</summary>
    protected override async ValueTask TruncateCoreAsync(long length)
    {
        if (length < Length)
        {
            throw BlockException.NotSupported("ssh driver does not support shrinking files");
        }

        var stream = await TakeAsync().ConfigureAwait(false);
        try
        {
            await SshConnection.OffLoop(() => stream.SetLength(length)).ConfigureAwait(false);
            Length = length;
        }
        catch (Exception e) when (IsSftpFailure(e))
        {
            throw new BlockException(Errno.EIO, "Failed to grow file", e);
        }
        finally
        {
            Return(stream);
        }
    }

    protected override async ValueTask DisposeCoreAsync()
    {
        foreach (var s in _all)
        {
            try
            {
                await SshConnection.OffLoop(s.Dispose).ConfigureAwait(false);
            }
            catch (Exception e) when (IsSftpFailure(e))
            {
                // A dropped session leaves nothing to close.
            }
        }

        await SshConnection.OffLoop(_client.Dispose).ConfigureAwait(false);
        _available.Dispose();
    }

    private async ValueTask<SftpFileStream> TakeAsync()
    {
        await _available.WaitAsync().ConfigureAwait(false);
        _idle.TryTake(out var stream);
        return stream!;
    }

    private void Return(SftpFileStream stream)
    {
        _idle.Add(stream);
        _available.Release();
    }

    private static bool IsSftpFailure(Exception e) =>
        e is SshException or IOException or ObjectDisposedException or InvalidOperationException or System.Net.Sockets.SocketException;

    /// <summary>QEMU reports a failed SFTP request as EIO; the reason says whether the session is gone.</summary>
    private BlockException Failure(string operation, Exception e) =>
        new(Errno.EIO, _client.IsConnected ? $"ssh {operation} failed: {e.Message}" : $"ssh {operation} failed: the connection to the server was lost", e);
}
