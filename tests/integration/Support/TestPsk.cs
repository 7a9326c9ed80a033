using System.Security.Cryptography;

namespace ExportServer.IntegrationTests.Support;

/// <summary>
/// Pre-shared keys made for a test, each directory with a keys.psk as QEMU reads it: the server's knows
/// alice and bob; alice's and bob's client files hold their own keys, mallory's holds another key under
/// alice's name, and carol's a key for a username the server does not know.
/// </summary>
internal sealed class TestPsk
{
    private TestPsk(string root)
    {
        Root = root;
    }

    public string Root { get; }

    public string Server => Path.Combine(Root, "server");

    public string Alice => Path.Combine(Root, "alice");

    public string Bob => Path.Combine(Root, "bob");

    /// <summary>Username alice with a key that is not alice's.</summary>
    public string Mallory => Path.Combine(Root, "mallory");

    /// <summary>Username carol, whom the server does not know.</summary>
    public string Carol => Path.Combine(Root, "carol");

    public static TestPsk Create(TempDir dir)
    {
        var psk = new TestPsk(dir["psk"]);
        var alice = Key();
        var bob = Key();
        Write(psk.Server, $"alice:{alice}\nbob:{bob}\n");
        Write(psk.Alice, $"alice:{alice}\n");
        Write(psk.Bob, $"bob:{bob}\n");
        Write(psk.Mallory, $"alice:{Key()}\n");
        Write(psk.Carol, $"carol:{alice}\n");
        return psk;
    }

    /// <summary>The --object option for credentials in <paramref name="dir"/> (a client's with its username).</summary>
    public static string Creds(string id, string dir, string endpoint) =>
        $"tls-creds-psk,id={id},dir={dir},endpoint={endpoint}" + (endpoint == "client" ? $",username={Username(dir)}" : string.Empty);

    /// <summary>The URI with which libnbd (nbdinfo, nbdcopy, nbdsh) connects as the client of <paramref name="dir"/>.</summary>
    public static string Nbds(string dir, int port, string export = "disk") =>
        $"nbds://{Username(dir)}@localhost:{port}/{export}?tls-psk-file={Path.Combine(dir, "keys.psk")}";

    private static string Username(string dir) => Path.GetFileName(dir) == "mallory" ? "alice" : Path.GetFileName(dir);

    private static string Key() => Convert.ToHexString(RandomNumberGenerator.GetBytes(32)).ToLowerInvariant();

    private static void Write(string dir, string keys)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "keys.psk"), keys);
    }
}
