namespace ExportServer.IntegrationTests.Support;

/// <summary>
/// Certificates made for a test with openssl: a test CA with a server certificate (localhost,
/// 127.0.0.1) and two client certificates, plus a second, unrelated CA with its own client and
/// server. Each credentials directory holds the files under QEMU's names.
/// </summary>
internal sealed class TestPki
{
    private TestPki(string root)
    {
        Root = root;
    }

    public string Root { get; }

    /// <summary>ca-cert.pem, server-cert.pem, server-key.pem of the test CA.</summary>
    public string Server => Path.Combine(Root, "server");

    /// <summary>ca-cert.pem, client-cert.pem, client-key.pem for <see cref="Client1Dn"/>.</summary>
    public string Client1 => Path.Combine(Root, "client1");

    /// <summary>The same for <see cref="Client2Dn"/>.</summary>
    public string Client2 => Path.Combine(Root, "client2");

    /// <summary>A client of the other CA, with the other CA as its trust: it neither trusts our server nor is trusted by it.</summary>
    public string Stranger => Path.Combine(Root, "stranger");

    /// <summary>A server of the other CA.</summary>
    public string StrangeServer => Path.Combine(Root, "strange-server");

    public const string Client1Dn = "CN=client1.example.com,O=Example Org,C=GB";

    public const string Client2Dn = "CN=intruder.example.net,O=Other Org,C=FR";

    public static async Task<TestPki> CreateAsync(TempDir dir)
    {
        var pki = new TestPki(dir["pki"]);
        var script = $$"""
            set -e
            cd '{{pki.Root}}'
            ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $1-key.pem -out $1-cert.pem -days 2 -subj "/CN=$1" \
                     -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null; }
            leaf() { # ca dir role subject ext
              mkdir -p $2; cp $1-cert.pem $2/ca-cert.pem
              openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $2/$3-key.pem -out $2/req.csr -subj "$4" 2>/dev/null
              printf "$5\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n" > $2/ext
              openssl x509 -req -in $2/req.csr -CA $1-cert.pem -CAkey $1-key.pem -CAcreateserial -out $2/$3-cert.pem -days 2 -extfile $2/ext 2>/dev/null
              rm $2/req.csr $2/ext; }
            ca testca; ca otherca
            leaf testca server server "/O=Example Org/CN=localhost" "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"
            leaf testca client1 client "/C=GB/O=Example Org/CN=client1.example.com" "extendedKeyUsage=clientAuth"
            leaf testca client2 client "/C=FR/O=Other Org/CN=intruder.example.net" "extendedKeyUsage=clientAuth"
            leaf otherca stranger client "/C=GB/O=Example Org/CN=client1.example.com" "extendedKeyUsage=clientAuth"
            leaf otherca strange-server server "/O=Example Org/CN=localhost" "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"
            """;
        Directory.CreateDirectory(pki.Root);
        (await Tool.ShAsync(script, TimeSpan.FromMinutes(2))).Check("make test certificates");
        return pki;
    }

    /// <summary>The --object option for credentials in <paramref name="dir"/>.</summary>
    public static string Creds(string id, string dir, string endpoint) => $"tls-creds-x509,id={id},dir={dir},endpoint={endpoint}";
}
