namespace ExportServer.Nbd.Authz;

/// <summary><c>authz-simple</c>: exactly one identity is allowed.</summary>
public sealed class AuthzSimple(string identity) : IAuthz
{
    public string Identity { get; } = identity;

    public bool IsAllowed(string identity) => string.Equals(identity, Identity, StringComparison.Ordinal);
}
