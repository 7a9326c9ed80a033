using System.Collections.Concurrent;
using ExportServer.Block.Core;
using Renci.SshNet;
using Renci.SshNet.Common;
using Renci.SshNet.Sftp;

namespace ExportServer.Block.Protocols.Ssh;

/// <summary>
/// A remote file over SFTP. The file is opened several times on one session: each request takes a
/// handle of its own, so that several SFTP reads and writes are in flight at once (SFTP answers each
/// request by id, whatever its handle). A write is acknowledged only once the server has answered it.
/// Block status is the default for a protocol (data, allocated): SFTP cannot tell holes. Each request
/// runs on a pool thread (see <see cref="SshConnection.OffLoop(Action)"/>), with the handle's
/// synchronous calls: their requests still overlap with those of the other handles.
/// </summary>
internal sealed class SshNode : BlockNode
{
    /// <summary>Requests in flight at once; OpenSSH's sftp client keeps 64 but per file 4 cover a queue of block requests.</summary>
    public const int Handles = 4;

    private readonly SftpClient _client;
    private readonly ConcurrentBag<SftpFileStream> _idle = [];
    private readonly SemaphoreSlim _available = new(Handles, Handles);
    private readonly SftpFileStream[] _all;
    private readonly string _fileName;

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

    public override string FileName => _fileName;

    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        var stream = await TakeAsync().ConfigureAwait(false);
        try
        {
            await SshConnection.OffLoop(() =>
            {
                stream.Position = offset;
                var rest = buffer.Span;
                while (!rest.IsEmpty)
                {
                    var n = stream.Read(rest);
                    if (n == 0)
                    {
                        // Past the end of a file that shrank under us: as QEMU's driver, zeroes.
                        rest.Clear();
                        break;
                    }

                    rest = rest[n..];
                }
            }).ConfigureAwait(false);
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

    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
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
