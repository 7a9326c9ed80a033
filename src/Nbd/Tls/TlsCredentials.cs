using System.Net.Sockets;
using ExportServer.Block.Core;

namespace ExportServer.Nbd.Tls;

/// <summary>
/// TLS credentials an NBD server or client names with <c>tls-creds</c>. A user (a running server, an open
/// nbd node) holds them, and object-del is refused while any does.
/// </summary>
public abstract class TlsCredentials
{
    private int _users;

    protected TlsCredentials(string id, TlsEndpoint endpoint)
    {
        Id = id;
        Endpoint = endpoint;
    }

    public string Id { get; }

    public TlsEndpoint Endpoint { get; }

    public int Users => Volatile.Read(ref _users);

    public void AddUser() => Interlocked.Increment(ref _users);

    public void RemoveUser() => Interlocked.Decrement(ref _users);

    /// <summary>The credentials <paramref name="id"/> for <paramref name="endpoint"/>, with QEMU's errors.</summary>
    public static TlsCredentials Find(NamedObjects objects, string id, TlsEndpoint endpoint)
    {
        if (!objects.Contains(id))
        {
            throw BlockException.Invalid($"No TLS credentials with id '{id}'");
        }

        var creds = objects.TryGet<TlsCredentials>(id) ?? throw BlockException.Invalid($"Object with id '{id}' is not TLS credentials");
        if (creds.Endpoint != endpoint)
        {
            throw BlockException.Invalid($"Expected TLS credentials for a {(endpoint == TlsEndpoint.Server ? "server" : "client")} endpoint");
        }

        return creds;
    }

    /// <summary>
    /// The server's side of the TLS handshake on <paramref name="socket"/>; throws
    /// <see cref="System.Security.Authentication.AuthenticationException"/> when the client is refused.
    /// </summary>
    internal abstract Task<TlsSession> AcceptAsync(Socket socket, CancellationToken ct);

    /// <summary>
    /// The client's side, with a server that must prove itself for <paramref name="hostName"/> where the
    /// credentials check names (any name when null); throws AuthenticationException when it does not.
    /// </summary>
    internal abstract Task<TlsSession> ConnectAsync(Socket socket, string? hostName, CancellationToken ct);
}
