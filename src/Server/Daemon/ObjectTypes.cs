using ExportServer.Block.Core;
using ExportServer.Block.Filters.Throttle;
using ExportServer.Block.Secrets;
using ExportServer.Nbd.Authz;
using ExportServer.Nbd.Tls;

namespace ExportServer.Server.Daemon;

/// <summary>Every kind of object the daemon creates by qom-type, besides iothreads (see <see cref="ObjectTable"/>).</summary>
internal static class ObjectTypes
{
    public static readonly IObjectType[] All =
    [
        new SecretObjectType(),
        new SecretKeyringObjectType(),
        new ThrottleGroups(),
        new TlsCredsX509Type(),
        new TlsCredsPskType(),
        .. AuthzObjectTypes.All,
    ];
}
