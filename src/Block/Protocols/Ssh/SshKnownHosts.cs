using System.Security.Cryptography;
using System.Text;

namespace ExportServer.Block.Protocols.Ssh;

/// <summary>
/// The host-key lookup of mode=known_hosts: ~/.ssh/known_hosts, then /etc/ssh/ssh_known_hosts, in
/// OpenSSH's format (plain or hashed host patterns, <c>[host]:port</c> for other ports than 22,
/// @revoked and @cert-authority lines skipped), with the outcomes libssh reports to QEMU.
/// </summary>
internal static class SshKnownHosts
{
    public static string? Check(string host, int port, byte[] keyBlob)
    {
        var name = port == 22 ? host : $"[{host}]:{port}";
        var home = Environment.GetEnvironmentVariable("HOME") ?? string.Empty;
        string[] files = [Path.Combine(home, ".ssh", "known_hosts"), "/etc/ssh/ssh_known_hosts"];
        var anyFile = false;
        var otherType = false;
        var keyType = SshAgentClient.KeyType(keyBlob);
        foreach (var file in files)
        {
            if (!System.IO.File.Exists(file))
            {
                continue;
            }

            anyFile = true;
            foreach (var raw in System.IO.File.ReadLines(file))
            {
                var fields = raw.Trim().Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
                if (fields.Length < 3 || fields[0].StartsWith('#') || fields[0].StartsWith('@') || !Matches(fields[0], name))
                {
                    continue;
                }

                byte[] blob;
                try
                {
                    blob = Convert.FromBase64String(fields[2]);
                }
                catch (FormatException)
                {
                    continue;
                }

                if (fields[1] != keyType)
                {
                    otherType = true;
                    continue;
                }

                return blob.AsSpan().SequenceEqual(keyBlob)
                    ? null
                    : $"host key ({keyType} key with fingerprint {Fingerprint(keyBlob)}) does not match the one in known_hosts; this may be a possible attack";
            }
        }

        return !anyFile ? "known_hosts file not found"
            : otherType ? "host key for this server not found, another type exists"
            : "no host key was found in known_hosts";
    }

    private static string Fingerprint(byte[] keyBlob) =>
        "SHA256:" + Convert.ToBase64String(SHA256.HashData(keyBlob)).TrimEnd('=');

    private static bool Matches(string patterns, string name)
    {
        if (patterns.StartsWith("|1|", StringComparison.Ordinal))
        {
            var parts = patterns.Split('|');
            if (parts.Length != 4)
            {
                return false;
            }

            try
            {
                var salt = Convert.FromBase64String(parts[2]);
                var hash = HMACSHA1.HashData(salt, Encoding.ASCII.GetBytes(name));
                return Convert.ToBase64String(hash) == parts[3];
            }
            catch (FormatException)
            {
                return false;
            }
        }

        var matched = false;
        foreach (var pattern in patterns.Split(','))
        {
            var negated = pattern.StartsWith('!');
            var p = negated ? pattern[1..] : pattern;
            if (Glob(p, name))
            {
                if (negated)
                {
                    return false;
                }

                matched = true;
            }
        }

        return matched;
    }

    /// <summary>OpenSSH's host patterns: '*' any run, '?' one character, case-insensitive.</summary>
    private static bool Glob(ReadOnlySpan<char> pattern, ReadOnlySpan<char> name)
    {
        while (!pattern.IsEmpty)
        {
            if (pattern[0] == '*')
            {
                for (var i = 0; i <= name.Length; i++)
                {
                    if (Glob(pattern[1..], name[i..]))
                    {
                        return true;
                    }
                }

                return false;
            }

            if (name.IsEmpty || (pattern[0] != '?' && char.ToLowerInvariant(pattern[0]) != char.ToLowerInvariant(name[0])))
            {
                return false;
            }

            pattern = pattern[1..];
            name = name[1..];
        }

        return name.IsEmpty;
    }
}
