using System.Globalization;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Protocols.Ssh;

/// <summary>
/// QEMU's BlockdevOptionsSsh: server (host, port 22 by default), path, user (the local user by
/// default), host-key-check and password-secret (QEMU 9.1). Also the 'location' of blockdev-create.
/// </summary>
internal sealed record SshLocation(string Host, int Port, string Path, string User, SshHostKeyCheck HostKeyCheck, string? PasswordSecret)
{
    public const int DefaultPort = 22;

    public static SshLocation Read(OptionReader options)
    {
        var server = options.GetObject("server") ?? throw BlockException.Invalid($"Parameter '{options.FullName("server")}' is missing");
        var host = server.RequireString("host");
        var portText = server.GetString("port") ?? DefaultPort.ToString(CultureInfo.InvariantCulture);
        foreach (var ignored in (string[])["numeric", "ipv4", "ipv6", "keep-alive"])
        {
            server.GetBool(ignored);
        }

        if (server.GetInt("to") is not null)
        {
            throw BlockException.NotSupported($"Parameter '{server.FullName("to")}' is not supported");
        }

        server.EnsureAllConsumed();
        if (!ushort.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out var port))
        {
            throw BlockException.Invalid($"Parameter '{server.FullName("port")}' expects a port number, got '{portText}'");
        }

        var path = options.RequireString("path");
        var user = options.GetString("user") ?? Environment.UserName;
        var check = SshHostKeyCheck.Read(options.GetObject("host-key-check"));
        var passwordSecret = options.GetString("password-secret");
        return new SshLocation(host, port, path, user, check, passwordSecret);
    }

    /// <summary>QEMU's exact file name of an ssh node.</summary>
    public string FileName => $"ssh://{User}@{Host}:{Port}{Path}";
}
