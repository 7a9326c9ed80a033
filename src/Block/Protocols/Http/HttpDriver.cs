using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Protocols.Http;

/// <summary>
/// QEMU's read-only http and https drivers (BlockdevOptionsCurlHttp, …Https): url, readahead (256 KiB by
/// default, a multiple of 512), timeout (seconds, 5 by default), username/password-secret,
/// proxy-username/proxy-password-secret (the proxy is the one http_proxy/https_proxy name, as for
/// libcurl), cookie or cookie-secret, and sslverify for https. The server must honour byte ranges.
/// </summary>
internal sealed class HttpDriver : IBlockDriver, IProtocolFileNames
{
    private const long DefaultReadahead = 256 * 1024;
    private const long DefaultTimeout = 5;

    /// <summary>QEMU's CURL_TIMEOUT_MAX.</summary>
    private const long MaxTimeout = 10000;

    private HttpDriver(string scheme)
    {
        Name = scheme;
    }

    public static HttpDriver Http { get; } = new("http");

    public static HttpDriver Https { get; } = new("https");

    public string Name { get; }

    public JsonObject? ParseFileName(string fileName) =>
        fileName.StartsWith(Name + "://", StringComparison.Ordinal)
            ? new JsonObject { ["driver"] = Name, ["url"] = fileName }
            : null;

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var url = options.GetString("url") ?? throw BlockException.Invalid("curl block driver requires an 'url' option");
        var readahead = options.GetSize("readahead") ?? DefaultReadahead;
        if (readahead % 512 != 0)
        {
            throw BlockException.Invalid($"HTTP_READAHEAD_SIZE {readahead} is not a multiple of 512");
        }

        var timeout = options.GetInt("timeout") ?? DefaultTimeout;
        if (timeout is < 0 or > MaxTimeout)
        {
            throw BlockException.Invalid("timeout parameter is too large or negative");
        }

        var sslVerify = Name != "https" || options.GetBool("sslverify", true);
        var cookie = options.GetString("cookie");
        var cookieSecret = options.GetString("cookie-secret");
        if (cookie is not null && cookieSecret is not null)
        {
            throw BlockException.Invalid("curl driver cannot handle both cookie and cookie secret");
        }

        var objects = context.Graph.Objects;
        cookie ??= cookieSecret is null ? null : Block.Secrets.Secrets.LookupUtf8(objects, cookieSecret);
        var user = options.GetString("username");
        var password = options.GetString("password-secret") is { } p ? Block.Secrets.Secrets.LookupUtf8(objects, p) : null;
        var proxyUser = options.GetString("proxy-username");
        var proxyPassword = options.GetString("proxy-password-secret") is { } pp ? Block.Secrets.Secrets.LookupUtf8(objects, pp) : null;

        if (!url.StartsWith(Name + "://", StringComparison.Ordinal))
        {
            throw BlockException.Invalid($"{Name} curl driver cannot handle the URL '{url}' (does not start with '{Name}://')");
        }

        if (!context.ReadOnly && !context.AutoReadOnly)
        {
            throw new BlockException(Errno.EACCES, "curl driver does not support writes");
        }

        var handler = new SocketsHttpHandler
        {
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
            MaxConnectionsPerServer = HttpNode.Connections,
            UseCookies = false,
            AutomaticDecompression = DecompressionMethods.None,
        };
        if (!sslVerify)
        {
            handler.SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = static (_, _, _, _) => true };
        }

        if (user is not null || password is not null)
        {
            handler.Credentials = new NetworkCredential(user ?? string.Empty, password ?? string.Empty);
            handler.PreAuthenticate = true;
        }

        if (proxyUser is not null || proxyPassword is not null)
        {
            handler.DefaultProxyCredentials = new NetworkCredential(proxyUser ?? string.Empty, proxyPassword ?? string.Empty);
        }

        var client = new HttpClient(handler) { Timeout = timeout == 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromSeconds(timeout) };
        if (cookie is not null)
        {
            client.DefaultRequestHeaders.TryAddWithoutValidation("Cookie", cookie);
        }

        try
        {
            var length = await ProbeAsync(client, url).ConfigureAwait(false);
            return new HttpNode(context.NodeName, Name, client, url, length, (int)Math.Min(readahead, int.MaxValue / 2));
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    /// <summary>As QEMU's curl_open: a HEAD request gives the size, and the server must announce byte ranges.</summary>
    private static async Task<long> ProbeAsync(HttpClient client, string url)
    {
        HttpResponseMessage response;
        try
        {
            response = await client.SendAsync(new HttpRequestMessage(HttpMethod.Head, url)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            throw new BlockException(Errno.EIO, $"CURL: Error opening file: {HttpNode.Describe(e)}", e);
        }

        using (response)
        {
            if (!response.IsSuccessStatusCode)
            {
                throw new BlockException(Errno.EIO, $"CURL: Error opening file: The requested URL returned error: {(int)response.StatusCode}");
            }

            var length = response.Content.Headers.ContentLength ?? throw new BlockException(Errno.EIO, "CURL: Error opening file: Server didn't report file size.");
            if (!response.Headers.AcceptRanges.Contains("bytes", StringComparer.OrdinalIgnoreCase))
            {
                throw new BlockException(Errno.EIO, "CURL: Error opening file: Server does not support 'range' (byte ranges).");
            }

            return length;
        }
    }
}
