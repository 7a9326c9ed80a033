using System.Diagnostics;
using ExportServer.IntegrationTests.Support;

namespace ExportServer.IntegrationTests.Http;

/// <summary>
/// A static HTTP(S) file server with byte ranges (python's http.server has none), on 127.0.0.1 and a
/// free port, serving one directory. With <c>ranges: false</c> it answers every GET whole, without
/// Accept-Ranges, as a server that does not honour ranges. With a certificate it speaks TLS.
/// </summary>
internal sealed class RangeServer : IAsyncDisposable
{
    private const string Script = """
        import http.server, os, re, ssl, sys
        root, port, ranges, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4], sys.argv[5]
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def log_message(self, *a): pass
            def head(self):
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
        s = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
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

    public static async Task<RangeServer> StartAsync(TempDir dir, string root, bool ranges = true, (string Cert, string Key)? tls = null)
    {
        var script = dir["range_server.py"];
        await File.WriteAllTextAsync(script, Script);
        var port = FreePort.Get();
        var psi = new ProcessStartInfo("/usr/bin/python3") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])[script, root, port.ToString(), ranges ? "1" : "0", tls?.Cert ?? "", tls?.Key ?? ""])
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
