using System.Security.Cryptography;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Protocols.Ssh;

/// <summary>
/// QEMU's SshHostKeyCheck: trust any key (none), compare its hash with the one given (hash, md5, sha1
/// or sha256 of the key blob in hex, colons and case ignored as QEMU ignores them), or look the host up
/// in known_hosts (the default).
/// </summary>
internal sealed record SshHostKeyCheck(string Mode, string? HashType, string? Hash)
{
    public static SshHostKeyCheck KnownHosts { get; } = new("known_hosts", null, null);

    public static SshHostKeyCheck Read(OptionReader? options)
    {
        if (options is null)
        {
            return KnownHosts;
        }

        var mode = options.RequireString("mode");
        switch (mode)
        {
            case "none":
            case "known_hosts":
                options.EnsureAllConsumed();
                return new SshHostKeyCheck(mode, null, null);
            case "hash":
                var type = options.RequireString("type");
                if (type is not ("md5" or "sha1" or "sha256"))
                {
                    throw BlockException.Invalid($"Parameter '{options.FullName("type")}' does not accept value '{type}'");
                }

                var hash = options.RequireString("hash");
                options.EnsureAllConsumed();
                return new SshHostKeyCheck(mode, type, hash);
            default:
                throw BlockException.Invalid($"Parameter '{options.FullName("mode")}' does not accept value '{mode}'");
        }
    }

    /// <summary>The legacy host_key_check of file names: no, yes, md5:H, sha1:H or sha256:H.</summary>
    public static SshHostKeyCheck? ParseLegacy(string value)
    {
        if (value == "no")
        {
            return new SshHostKeyCheck("none", null, null);
        }

        if (value == "yes")
        {
            return KnownHosts;
        }

        foreach (var type in (string[])["md5", "sha1", "sha256"])
        {
            if (value.StartsWith(type + ":", StringComparison.Ordinal))
            {
                return new SshHostKeyCheck("hash", type, value[(type.Length + 1)..]);
            }
        }

        return null;
    }

    /// <summary>Null when <paramref name="keyBlob"/> passes, else QEMU's message for the refusal.</summary>
    public string? Check(string host, int port, byte[] keyBlob)
    {
        switch (Mode)
        {
            case "none":
                return null;
            case "hash":
                var fingerprint = Convert.ToHexStringLower(HashOf(HashType!, keyBlob));
                return string.Equals(fingerprint, Hash!.Replace(":", string.Empty, StringComparison.Ordinal), StringComparison.OrdinalIgnoreCase)
                    ? null
                    : $"remote host {SshAgentClient.KeyType(keyBlob)} key fingerprint '{HashType}:{fingerprint}' does not match host_key_check '{HashType}:{Hash}'";
            default:
                return SshKnownHosts.Check(host, port, keyBlob);
        }
    }

    private static byte[] HashOf(string type, byte[] data) => type switch
    {
        "md5" => MD5.HashData(data),
        "sha1" => SHA1.HashData(data),
        _ => SHA256.HashData(data),
    };
}
