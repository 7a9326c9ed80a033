using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Nbd.Tls;

/// <summary>The properties every TLS credentials kind shares (QEMU's tls-creds base) and the files in <c>dir</c>.</summary>
internal sealed record TlsCommonOptions(string Dir, TlsEndpoint Endpoint, bool VerifyPeer)
{
    /// <summary>GnuTLS priority strings that mean the library's defaults, which is what the .NET stack uses.</summary>
    private static readonly HashSet<string> s_defaultPriorities = new(StringComparer.Ordinal) { "NORMAL", "@SYSTEM" };

    public static TlsCommonOptions Read(string qomType, OptionReader options)
    {
        var dir = options.GetString("dir");
        var endpoint = options.GetEnum("endpoint", TlsCredsX509Type.Endpoints) ?? TlsEndpoint.Client;
        var verifyPeer = options.GetBool("verify-peer", true);
        if (options.GetString("priority") is { } priority && !s_defaultPriorities.Contains(priority))
        {
            throw BlockException.NotSupported($"TLS priority '{priority}' is not supported: only the default priorities (NORMAL, @SYSTEM) are");
        }

        if (options.Has("loaded"))
        {
            throw BlockException.Invalid($"Property '{qomType}.loaded' is not writable");
        }

        return new TlsCommonOptions(dir ?? throw BlockException.Invalid("Missing 'dir' property value"), endpoint, verifyPeer);
    }

    /// <summary>The path of <paramref name="name"/> in dir; a required file must exist (as QEMU checks it, a directory passes here and fails when read), an optional one may be absent (null).</summary>
    public string? File(string name, bool required)
    {
        var path = Path.Combine(Dir, name);
        if (System.IO.File.Exists(path) || Directory.Exists(path))
        {
            return path;
        }

        return required
            ? throw BlockException.Invalid($"Unable to access credentials {path}: No such file or directory")
            : null;
    }

    public static string ReadFile(string path)
    {
        try
        {
            return System.IO.File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw BlockException.Invalid($"Unable to access credentials {path}: {BlockException.Reason(e)}");
        }
    }

    /// <summary>object-del for a credentials kind: false for another kind, refused while a server or node uses them.</summary>
    public static bool TryDelete<T>(NamedObjects objects, string id)
        where T : TlsCredentials
    {
        if (objects.TryGet<T>(id) is not { } creds)
        {
            return false;
        }

        if (creds.Users > 0)
        {
            throw BlockException.Invalid($"object '{id}' is in use, can not be deleted");
        }

        objects.Remove(id);
        return true;
    }
}
