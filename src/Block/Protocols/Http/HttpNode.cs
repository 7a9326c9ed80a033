using System.Net;
using System.Net.Http.Headers;
using ExportServer.Block.Core;

namespace ExportServer.Block.Protocols.Http;

/// <summary>
/// A read-only node over HTTP range requests. Requests run concurrently on up to
/// <see cref="Connections"/> pooled connections; each asks for its range plus the readahead, and
/// the part beyond what was asked is kept (one segment) to answer the sequential read that follows.
/// A reply that is not 206 with the asked range is an I/O error: the server ignored the range.
/// </summary>
internal sealed class HttpNode : BlockNode
{
    /// <summary>Connections in flight at once (QEMU's curl driver keeps up to 8 states).</summary>
    public const int Connections = 8;

    private readonly HttpClient _client;
    private readonly string _url;
    private readonly int _readahead;
    private readonly Lock _lock = new();
    private long _cacheOffset = -1;
    private byte[] _cache = [];

    public HttpNode(string nodeName, string driverName, HttpClient client, string url, long length, int readahead)
        : base(nodeName, readOnly: true)
    {
        DriverName = driverName;
        _client = client;
        _url = url;
        _readahead = readahead;
        Length = length;
    }

    public override string DriverName { get; }

    public override bool IsRemote => true;

    public override string FileName => _url;

    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        if (buffer.IsEmpty || TryCache(offset, buffer.Span))
        {
            return;
        }

        var end = Math.Min(Length, offset + buffer.Length + _readahead);
        using var request = new HttpRequestMessage(HttpMethod.Get, _url);
        request.Headers.Range = new RangeHeaderValue(offset, end - 1);
        try
        {
            using var response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).ConfigureAwait(false);
            if (response.StatusCode != HttpStatusCode.PartialContent || response.Content.Headers.ContentRange?.From != offset)
            {
                throw new BlockException(Errno.EIO, $"curl: server answered a range request with {(int)response.StatusCode} {response.ReasonPhrase}");
            }

            var body = await response.Content.ReadAsByteArrayAsync().ConfigureAwait(false);
            if (body.Length < buffer.Length)
            {
                throw new BlockException(Errno.EIO, $"curl: short range reply ({body.Length} of {buffer.Length} bytes)");
            }

            body.AsSpan(0, buffer.Length).CopyTo(buffer.Span);
            if (body.Length > buffer.Length)
            {
                lock (_lock)
                {
                    _cache = body;
                    _cacheOffset = offset;
                }
            }
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
        {
            throw new BlockException(Errno.EIO, "curl: " + Describe(e), e);
        }
    }

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags) =>
        throw new BlockException(Errno.EACCES, "curl driver does not support writes");

    protected override ValueTask FlushCoreAsync() => ValueTask.CompletedTask;

    protected override ValueTask DisposeCoreAsync()
    {
        _client.Dispose();
        return ValueTask.CompletedTask;
    }

    private bool TryCache(long offset, Span<byte> buffer)
    {
        lock (_lock)
        {
            if (_cacheOffset < 0 || offset < _cacheOffset || offset + buffer.Length > _cacheOffset + _cache.Length)
            {
                return false;
            }

            _cache.AsSpan((int)(offset - _cacheOffset), buffer.Length).CopyTo(buffer);
            return true;
        }
    }

    /// <summary>The reason of a failed request in libcurl's manner: a timeout or the transport's message.</summary>
    public static string Describe(Exception e) => e switch
    {
        TaskCanceledException => "Timeout was reached",
        HttpRequestException { InnerException: { } inner } => inner.Message,
        _ => e.Message,
    };
}
