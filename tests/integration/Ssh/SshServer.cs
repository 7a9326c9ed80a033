using System.Diagnostics;
using System.Net.Sockets;
using System.Security.Cryptography;
using ExportServer.IntegrationTests.Support;

namespace ExportServer.IntegrationTests.Ssh;

/// <summary>
/// An OpenSSH sshd on 127.0.0.1 (a free port) with a host key made for the test, and an ssh-agent
/// holding the one client key sshd accepts. Files are served by sshd's internal SFTP server. Started
/// with passwords on, it also lets <see cref="PasswordUser"/> log in with a password (sshd without PAM
/// checks it against /etc/shadow).
/// </summary>
internal sealed class SshServer : IAsyncDisposable
{
    private readonly Process _sshd;
    private readonly Process _agent;

    private SshServer(Process sshd, Process agent, int port, string agentSocket, string hostKeySha256)
    {
        _sshd = sshd;
        _agent = agent;
        Port = port;
        AgentSocket = agentSocket;
        HostKeySha256 = hostKeySha256;
    }

    public int Port { get; }

    /// <summary>The listening sshd; each client session runs in a child of it.</summary>
    public int Pid => _sshd.Id;

    /// <summary>The SSH_AUTH_SOCK of the agent that holds the client key.</summary>
    public string AgentSocket { get; }

    /// <summary>The host key's SHA-256 in hex, as host-key-check.hash takes it.</summary>
    public string HostKeySha256 { get; }

    /// <summary>
    /// A local account for password logins: no home directory, no login shell (the internal SFTP
    /// server needs none), its password set afresh by <see cref="SetPasswordUserAsync"/>.
    /// </summary>
    public const string PasswordUser = "es-sftp-test";

    public Dictionary<string, string> Env => new() { ["SSH_AUTH_SOCK"] = AgentSocket };

    /// <summary>The options of an ssh node for <paramref name="path"/> with the host key checked by hash.</summary>
    public string NodeOptions(string path, string? hash = null) =>
        $"driver=ssh,server.host=127.0.0.1,server.port={Port},path={path},host-key-check.mode=hash,host-key-check.type=sha256,host-key-check.hash={hash ?? HostKeySha256}";

    public static async Task<SshServer> StartAsync(TempDir dir, bool passwords = false)
    {
        var hostKey = dir["ssh_host_key"];
        var clientKey = dir["client_key"];
        (await Tool.RunAsync("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey)).Check("host key");
        (await Tool.RunAsync("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", clientKey)).Check("client key");
        File.Copy(clientKey + ".pub", dir["authorized_keys"]);
        var port = FreePort.Get();
        File.WriteAllText(dir["sshd_config"], $"""
            Port {port}
            ListenAddress 127.0.0.1
            HostKey {hostKey}
            AuthorizedKeysFile {dir["authorized_keys"]}
            PidFile none
            StrictModes no
            UsePAM no
            PasswordAuthentication {(passwords ? "yes" : "no")}
            KbdInteractiveAuthentication no
            Subsystem sftp internal-sftp

            """);

        // sshd refuses to start without its privilege-separation directory.
        Directory.CreateDirectory("/run/sshd");
        var sshd = Start("/usr/sbin/sshd", "-D", "-e", "-f", dir["sshd_config"]);
        var agentSocket = dir["agent.sock"];
        var agent = Start("ssh-agent", "-D", "-a", agentSocket);
        var server = new SshServer(sshd, agent, port, agentSocket, HostKeyHash(hostKey + ".pub"));
        try
        {
            await WaitAsync(() => File.Exists(agentSocket), "ssh-agent");
            (await Tool.RunAsync("ssh-add", [clientKey], env: server.Env)).Check("ssh-add");
            await WaitAsync(() => Listens(port), "sshd");
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Creates <see cref="PasswordUser"/> if it does not exist yet and gives it a new random password,
    /// which it returns. Only that account is touched.
    /// </summary>
    public static async Task<string> SetPasswordUserAsync()
    {
        if ((await Tool.RunAsync("id", "-u", PasswordUser)).ExitCode != 0)
        {
            (await Tool.RunAsync("useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", PasswordUser)).Check("useradd");
        }

        var password = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));
        (await Tool.RunAsync("chpasswd", [], stdin: $"{PasswordUser}:{password}\n")).Check("chpasswd");
        return password;
    }

    public ValueTask DisposeAsync()
    {
        foreach (var p in (Process[])[_sshd, _agent])
        {
            if (!p.HasExited)
            {
                p.Kill();
                p.WaitForExit();
            }

            p.Dispose();
        }

        return ValueTask.CompletedTask;
    }

    private static Process Start(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        var p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start " + file);
        p.BeginErrorReadLine();
        p.BeginOutputReadLine();
        return p;
    }

    private static string HostKeyHash(string publicKeyFile)
    {
        var blob = Convert.FromBase64String(File.ReadAllText(publicKeyFile).Split(' ')[1]);
        return Convert.ToHexStringLower(SHA256.HashData(blob));
    }

    private static bool Listens(int port)
    {
        try
        {
            using var c = new TcpClient("127.0.0.1", port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private static async Task WaitAsync(Func<bool> ready, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!ready())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException(what + " did not start");
            }

            await Task.Delay(50);
        }
    }
}
