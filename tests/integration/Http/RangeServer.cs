using System.Diagnostics;
using ExportServer.IntegrationTests.Support;

namespace ExportServer.IntegrationTests.Http;

/// <summary>
/// A static HTTP(S) file server with byte ranges (python's http.server has none), on 127.0.0.1 and a
/// free port, serving one directory. With <c>ranges: false</c> it answers every GET whole, without
/// Accept-Ranges, as a server that does not honour ranges. With a certificate it speaks TLS. With
/// <c>require</c> a request must carry those header values (a missing Authorization is challenged
/// with 401 and WWW-Authenticate: Basic, anything else is 403). <see cref="StartProxyAsync"/> starts
/// instead a forward proxy for http URLs that asks for Basic proxy credentials (407) and counts the
/// requests it forwarded in <see cref="Forwarded"/>.
/// </summary>
internal sealed class RangeServer : IAsyncDisposable
{
    private const string Script = """
        import http.server, json, os, re, ssl, sys, urllib.request
        root, port, ranges, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4], sys.argv[5]
        require, proxy = json.loads(sys.argv[6]), sys.argv[7] == "1"
        def refuse(h):
            for name, value in require.items():
                wanted = "Proxy-Authorization" if proxy and name == "Authorization" else name
                if h.headers.get(wanted) != value:
                    code = 407 if proxy else 401 if name == "Authorization" else 403
                    h.send_response(code)
                    if code != 403:
                        h.send_header("Proxy-Authenticate" if proxy else "WWW-Authenticate", 'Basic realm="test"')
                    h.send_header("Content-Length", "0")
                    h.end_headers()
                    return True
            return False
        class P(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def log_message(self, *a): pass
            def forward(self, method):
                if refuse(self): return
                with open(os.path.join(root, "forwarded"), "a") as f: f.write(method + "\n")
                req = urllib.request.Request(self.path, method=method)
                if "Range" in self.headers: req.add_header("Range", self.headers["Range"])
                with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req) as r:
                    data = r.read()
                    self.send_response(r.status)
                    for k in ("Content-Range", "Accept-Ranges"):
                        if r.headers.get(k): self.send_header(k, r.headers[k])
                    self.send_header("Content-Length", r.headers.get("Content-Length") if method == "HEAD" else str(len(data)))
                    self.end_headers()
                    if method == "GET": self.wfile.write(data)
            def do_HEAD(self): self.forward("HEAD")
            def do_GET(self): self.forward("GET")
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def log_message(self, *a): pass
            def head(self):
                if refuse(self): return None
                path = os.path.join(root, self.path.lstrip("/"))
                if not os.path.isfile(path):
                    self.send_error(404); return None
                return path
            def do_HEAD(self):
                path = self.head()
                if path is None: return
                self.send_response(200)
                self.send_header("Content-Length", str(os.path.getsize(path)))
                if ranges: self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
            def do_GET(self):
                path = self.head()
                if path is None: return
                size = os.path.getsize(path)
                m = re.match(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
                start, end = (int(m.group(1)), min(int(m.group(2)), size - 1)) if ranges and m else (0, size - 1)
                with open(path, "rb") as f:
                    f.seek(start); data = f.read(end - start + 1)
                if ranges and m:
                    self.send_response(206)
                    self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
        s = http.server.ThreadingHTTPServer(("127.0.0.1", port), P if proxy else H)
        if cert:
            c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain(cert, key)
            s.socket = c.wrap_socket(s.socket, server_side=True)
        print("ready", flush=True)
        s.serve_forever()
        """;

    private readonly Process _process;

    private RangeServer(Process process, string url)
    {
        _process = process;
        Url = url;
    }

    /// <summary>The URL of the served directory, ending in '/'.</summary>
    public string Url { get; }

    /// <summary>Requests the proxy has forwarded (it counts them in a file of its directory).</summary>
    public int Forwarded => File.Exists(_forwarded) ? File.ReadAllLines(_forwarded).Length : 0;

    private string _forwarded = string.Empty;

    /// <summary>A forward proxy on 127.0.0.1 whose clients must send these Basic credentials; its URL is <see cref="Url"/>.</summary>
    public static async Task<RangeServer> StartProxyAsync(TempDir dir, string user, string password)
    {
        var state = dir["proxy-state"];
        Directory.CreateDirectory(state);
        var server = await StartAsync(dir, state, require: new() { ["Authorization"] = Basic(user, password) }, proxy: true);
        server._forwarded = Path.Combine(state, "forwarded");
        return server;
    }

    /// <summary>The Authorization header value of HTTP Basic authentication.</summary>
    public static string Basic(string user, string password) =>
        "Basic " + Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes($"{user}:{password}"));

    public static async Task<RangeServer> StartAsync(
        TempDir dir, string root, bool ranges = true, (string Cert, string Key)? tls = null, Dictionary<string, string>? require = null, bool proxy = false)
    {
        var script = dir["range_server.py"];
        await File.WriteAllTextAsync(script, Script);
        var port = FreePort.Get();
        var psi = new ProcessStartInfo("/usr/bin/python3") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])[script, root, port.ToString(), ranges ? "1" : "0", tls?.Cert ?? "", tls?.Key ?? "",
                     new System.Text.Json.Nodes.JsonObject((require ?? []).Select(h => KeyValuePair.Create(h.Key, (System.Text.Json.Nodes.JsonNode?)h.Value))).ToJsonString(), proxy ? "1" : "0"])
        {
            psi.ArgumentList.Add(a);
        }

        var p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start python3");
        var ready = await p.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30));
        if (ready != "ready")
        {
            throw new InvalidOperationException("range server did not start: " + await p.StandardError.ReadToEndAsync());
        }

        return new RangeServer(p, $"{(tls is null ? "http" : "https")}://127.0.0.1:{port}/");
    }

    /// <summary>A test CA and a certificate for 127.0.0.1 signed by it: (CA file, certificate, key).</summary>
    public static async Task<(string Ca, string Cert, string Key)> MakeCertificatesAsync(TempDir dir)
    {
        var ca = dir["ca.pem"];
        var cert = dir["server.pem"];
        var key = dir["server.key"];
        (await Tool.ShAsync($"""
            set -e
            cd {dir.Path}
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out {ca} -days 2 -subj /CN=test-ca 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -keyout {key} -out server.csr -subj /CN=127.0.0.1 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > san.ext
            openssl x509 -req -in server.csr -CA {ca} -CAkey ca.key -CAcreateserial -out {cert} -days 2 -extfile san.ext 2>/dev/null
            """)).Check("certificates");
        return (ca, cert, key);
    }

    public ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }

        _process.Dispose();
        return ValueTask.CompletedTask;
    }
}
