using System.Net;
using System.Net.Sockets;

namespace ExportServer.IntegrationTests.Support;

internal static class FreePort
{
    /// <summary>A TCP port that was free a moment ago on loopback.</summary>
    public static int Get()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
