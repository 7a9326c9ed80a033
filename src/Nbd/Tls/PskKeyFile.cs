using ExportServer.Block.Core;

namespace ExportServer.Nbd.Tls;

/// <summary>
/// <c>keys.psk</c> as QEMU and GnuTLS read it: lines of <c>username:hexkey</c>, the first line for a
/// username wins. A client reads its key once, when its credentials are made; a server reads the file
/// again for each handshake, so keys added or removed take effect for the next client.
/// </summary>
internal static class PskKeyFile
{
    public const string Name = "keys.psk";

    /// <summary>The text of the file, or QEMU's error (in GLib's words) when it cannot be read.</summary>
    public static string Read(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            var reason = Directory.Exists(path)
                ? $"Error reading file \u201c{path}\u201d: Is a directory"
                : $"Failed to open file \u201c{path}\u201d: {BlockException.Reason(e)}";
            throw BlockException.Invalid($"Cannot read PSK file {path}: {reason}");
        }
    }

    /// <summary>The text after <c>username:</c> on the first line that starts so; null when no line does.</summary>
    public static string? FindHexKey(string content, string username)
    {
        foreach (var line in content.Split('\n'))
        {
            if (line.Length > username.Length && line.StartsWith(username, StringComparison.Ordinal) && line[username.Length] == ':')
            {
                return line[(username.Length + 1)..].TrimEnd('\r', ' ');
            }
        }

        return null;
    }

    /// <summary>The key's bytes, or null with GnuTLS's reason for an empty key or one that is not an even number of hex digits.</summary>
    public static byte[]? Decode(string hex, out string? error)
    {
        error = null;
        if (hex.Length == 0)
        {
            error = "The request is invalid.";
            return null;
        }

        try
        {
            return Convert.FromHexString(hex);
        }
        catch (FormatException)
        {
            error = "Error in parsing.";
            return null;
        }
    }
}
