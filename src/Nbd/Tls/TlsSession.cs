namespace ExportServer.Nbd.Tls;

/// <summary>
/// An established TLS session: the stream that carries the rest of the connection, what was negotiated
/// (for the trace), and the identity the peer proved, which authorization rules match: a client
/// certificate's distinguished name, or a PSK username. Null when the credentials check no identity.
/// </summary>
internal sealed record TlsSession(Stream Stream, string Protocol, string Cipher, string? PeerIdentity);
