using System.Net;
using System.Net.Sockets;
using System.Text;

namespace ExportServer.Nbd.Protocol;

/// <summary>
/// NBD connections over TCP whose two ends are on this host (a loopback peer, or a peer at the
/// connection's own local address), accepted by the server or opened by an nbd node, leave a
/// pacing congestion control: where the host's default is BBR, such a connection uses cubic (reno
/// where cubic is missing). BBR paces a connection's segments from a timer, which only adds work on
/// a loopback path, where there is no queue to pace for. On loopback, BBR connections were seen to
/// reorder segments and send them again (sends from the pacing timer, from ACKs and from the sending
/// thread run on different CPUs, the likely cause). With BBR, 2.5-4 % of the bytes of a 1 GiB read to nbdcopy went twice; with cubic at our end,
/// 1.5-1.8 %, and the read took 545 ms instead of 621 (medians of 10). Connections to other hosts
/// keep the host's choice. Best effort: a kernel that refuses keeps its default.
/// </summary>
internal static class SameHostTcp
{
    private const int IpProtoTcp = 6;
    private const int TcpCongestion = 13;

    private static readonly byte[][] s_unpaced = [Encoding.ASCII.GetBytes("cubic"), Encoding.ASCII.GetBytes("reno")];

    /// <summary>Moves <paramref name="socket"/>, a connected TCP socket, off BBR when its peer is on this host.</summary>
    public static void AvoidPacing(Socket socket)
    {
        try
        {
            if (!IsSameHost(socket) || !CongestionControl(socket).StartsWith("bbr", StringComparison.Ordinal))
            {
                return;
            }

            foreach (var name in s_unpaced)
            {
                try
                {
                    socket.SetRawSocketOption(IpProtoTcp, TcpCongestion, name);
                    return;
                }
                catch (SocketException)
                {
                }
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    }

    /// <summary>The congestion control the socket uses now (TCP_CONGESTION).</summary>
    private static string CongestionControl(Socket socket)
    {
        Span<byte> name = stackalloc byte[16];
        var n = socket.GetRawSocketOption(IpProtoTcp, TcpCongestion, name);
        return Encoding.ASCII.GetString(name[..n]).TrimEnd('\0');
    }

    private static bool IsSameHost(Socket socket)
    {
        if (socket.RemoteEndPoint is not IPEndPoint remote || socket.LocalEndPoint is not IPEndPoint local)
        {
            return false;
        }

        var peer = remote.Address.IsIPv4MappedToIPv6 ? remote.Address.MapToIPv4() : remote.Address;
        var self = local.Address.IsIPv4MappedToIPv6 ? local.Address.MapToIPv4() : local.Address;
        return IPAddress.IsLoopback(peer) || peer.Equals(self);
    }
}
