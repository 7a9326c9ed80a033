using System.Net.Sockets;
using ExportServer.Block.Core;
using Renci.SshNet;
using Renci.SshNet.Common;
using Renci.SshNet.Sftp;

namespace ExportServer.Block.Protocols.Ssh;

/// <summary>
/// Opens an SFTP session as QEMU's ssh driver does: TCP connection, key exchange with the host key
/// checked as host-key-check says, then authentication, with a password when password-secret is
/// given, else by public key with the identities of the ssh-agent at SSH_AUTH_SOCK and the default
/// identity files (~/.ssh/id_ed25519, id_ecdsa, id_rsa, when not encrypted). Errors carry QEMU's words.
/// </summary>
internal static class SshConnection
{
    private static readonly string[] DefaultIdentities = ["id_ed25519", "id_ecdsa", "id_rsa"];

    public static async ValueTask<SftpClient> ConnectAsync(SshLocation location, NamedObjects objects)
    {
        var password = location.PasswordSecret is { } id ? Block.Secrets.Secrets.LookupUtf8(objects, id) : null;
        var agent = password is null ? SshAgentClient.TryConnect() : null;
        AuthenticationMethod method = password is not null
            ? new PasswordAuthenticationMethod(location.User, password)
            : new PrivateKeyAuthenticationMethod(location.User, KeySources(agent));
        var info = new ConnectionInfo(location.Host, location.Port, location.User, method);
        PreferAesGcm(info);
        var client = new SftpClient(info);
        string? hostKeyError = null;
        client.HostKeyReceived += (_, e) =>
        {
            hostKeyError = location.HostKeyCheck.Check(location.Host, location.Port, e.HostKey);
            e.CanTrust = hostKeyError is null;
        };
        try
        {
            await OffLoop(client.Connect).ConfigureAwait(false);
            return client;
        }
        catch (Exception e) when (e is SshException or SocketException or InvalidOperationException or InvalidDataException)
        {
            client.Dispose();
            throw hostKeyError is not null ? BlockException.Invalid(hostKeyError) : Describe(e, location, password is not null, agent is not null);
        }
        finally
        {
            agent?.Dispose();
        }
    }

    /// <summary>
    /// Runs a call into SSH.NET on a pool thread. SSH.NET waits synchronously inside its own socket
    /// continuations, and the daemon completes socket operations inline on the runtime's event-loop
    /// threads: a wait there would hold up the very completion it waits for.
    /// </summary>
    public static Task OffLoop(Action action) => Task.Run(action);

    /// <inheritdoc cref="OffLoop(Action)"/>
    public static Task<T> OffLoop<T>(Func<T> call) => Task.Run(call);

    /// <inheritdoc cref="OffLoop(Action)"/>
    public static Task OffLoop(Func<Task> call) => Task.Run(call);

    /// <summary>
    /// Puts AES-GCM first among the ciphers offered. SSH.NET's first choice, aes128-ctr with
    /// hmac-sha2-256, takes two passes over every packet (counter blocks, then the MAC); AES-GCM is
    /// one pass through .NET's AesGcm on the processor's AES instructions. A server without it
    /// agrees on the next cipher of the list, as before.
    /// </summary>
    private static void PreferAesGcm(ConnectionInfo info)
    {
        string[] preferred = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"];
        for (var i = 0; i < preferred.Length; i++)
        {
            if (info.Encryptions.ContainsKey(preferred[i]))
            {
                info.Encryptions.SetPosition(preferred[i], i);
            }
        }
    }

    private static BlockException Describe(Exception e, SshLocation location, bool password, bool agent) => e switch
    {
        SshAuthenticationException when password => new BlockException(Errno.EPERM, "failed to authenticate using password authentication"),
        SshAuthenticationException when agent => new BlockException(Errno.EPERM, "failed to authenticate using publickey authentication and the identities held by your ssh-agent"),
        SshAuthenticationException => new BlockException(Errno.EPERM, "failed to authenticate using publickey authentication"),
        SocketException s => new BlockException(Errno.EIO, $"Failed to connect to '{location.Host}:{location.Port}': {s.Message}"),
        _ => new BlockException(Errno.EIO, $"failed to establish SSH session: {e.Message}"),
    };

    private static IPrivateKeySource[] KeySources(SshAgentClient? agent)
    {
        var sources = new List<IPrivateKeySource>();
        if (agent is not null)
        {
            sources.AddRange(SshAgentKey.Identities(agent));
        }

        var home = Environment.GetEnvironmentVariable("HOME") ?? string.Empty;
        foreach (var name in DefaultIdentities)
        {
            var path = Path.Combine(home, ".ssh", name);
            if (!System.IO.File.Exists(path))
            {
                continue;
            }

            try
            {
                sources.Add(new PrivateKeyFile(path));
            }
            catch (SshException)
            {
                // An identity protected by a passphrase is only usable through the agent.
            }
        }

        return [.. sources];
    }

    /// <summary>QEMU's "failed to open remote file" with the SFTP status, errno as the status means.</summary>
    public static BlockException OpenError(Exception e, string path) => e switch
    {
        SftpPathNotFoundException => new BlockException(Errno.ENOENT, $"failed to open remote file '{path}': SFTP server: No such file (libssh error code: 1, sftp error code: 2)"),
        SftpPermissionDeniedException => new BlockException(Errno.EACCES, $"failed to open remote file '{path}': SFTP server: Permission denied (libssh error code: 1, sftp error code: 3)"),
        _ => new BlockException(Errno.EIO, $"failed to open remote file '{path}': {e.Message}"),
    };
}
