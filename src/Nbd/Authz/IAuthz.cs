namespace ExportServer.Nbd.Authz;

/// <summary>
/// An authorization object (<c>authz-simple</c>, <c>authz-list</c>, <c>authz-list-file</c>): decides
/// whether an identity, such as a client certificate's distinguished name, may connect. As in QEMU,
/// a server names it by id and looks it up for each client, so it can be replaced while serving.
/// </summary>
public interface IAuthz
{
    /// <summary>True when <paramref name="identity"/> is allowed.</summary>
    bool IsAllowed(string identity);
}
