using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Jobs;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Nbd;

/// <summary>
/// Where a host's default congestion control is BBR, NBD connections within the host use cubic and
/// connections to or from other hosts keep BBR, on both sides of the protocol. Host A is a network
/// namespace whose default is set to BBR. The server test: our daemon listens on all of A's
/// addresses, and libnbd clients connect from A over loopback, from A to A's own veth address, and
/// from host B. The client test: our daemon in A opens nbd nodes to a server on A's loopback and to
/// one in B. `ss -ti` in A shows the congestion control of each of our daemon's sockets.
/// </summary>
public sealed class SameHostTcpTests
{
    [Fact]
    public async Task SameHostClientsGetCubicAndOtherHostsKeepBbr()
    {
        using var dir = new TempDir();
        await using var hosts = await BbrHostsAsync();

        await using var a = await JobDaemon.StartTcpAsync(dir, "a", hosts.NamespaceA, "0.0.0.0", hosts.PortA);
        await a.Qmp.ExecuteAsync("blockdev-add", new JsonObject
        {
            ["driver"] = "null-co", ["node-name"] = "n", ["size"] = 1L << 20, ["read-zeroes"] = true,
        });
        await a.ExportAsync("n");

        var port = hosts.PortA;
        var hold = "import nbd, sys, time\n"
            + "hs = []\n"
            + "for u in sys.argv[1:]:\n"
            + "    h = nbd.NBD(); h.connect_uri(u); assert h.pread(512, 0) == bytes(512); hs.append(h)\n"
            + "time.sleep(30)\n";
        File.WriteAllText(dir["hold.py"], hold);
        var script = $"""
            ip netns exec {hosts.NamespaceA} /usr/bin/python3 {dir["hold.py"]} nbd://127.0.0.1:{port}/n nbd://{hosts.AddressA}:{port}/n & ca=$!
            ip netns exec {hosts.NamespaceB} /usr/bin/python3 {dir["hold.py"]} nbd://{hosts.AddressA}:{port}/n & cb=$!
            for i in $(seq 100); do
              [ "$(ip netns exec {hosts.NamespaceA} ss -H -tn state established "( sport = :{port} )" | wc -l)" = 3 ] && break
              sleep 0.1
            done
            ip netns exec {hosts.NamespaceA} ss -H -tin state established "( sport = :{port} )"
            kill $ca $cb
            """;
        var result = await Tool.ShAsync(script, TimeSpan.FromSeconds(60));

        var control = ControlByPeer(result.Stdout);
        var shown = $"ss in A:\n{result.Stdout}\n{result.Stderr}";
        Assert.Equal(3, control.Values.Sum(v => v.Split(',').Length));
        Assert.True(control.TryGetValue("127.0.0.1", out var loopback) && Every(loopback, "cubic"), shown);
        Assert.True(control.TryGetValue(hosts.AddressB, out var other) && Every(other, "bbr"), shown);
        // A client in A at A's own address: its peer address is A's, and its socket is A's too.
        Assert.True(control.TryGetValue(hosts.AddressA, out var own) && Every(own, "cubic"), shown);
    }

    [Fact]
    public async Task NbdNodesConnectingToThisHostGetCubicAndToOtherHostsKeepBbr()
    {
        using var dir = new TempDir();
        await using var hosts = await BbrHostsAsync();

        // Servers to connect to: one in A on loopback, one in B.
        const int nearPort = 10810;
        string[] Serve(string ns, string host, int port) =>
        [
            "netns", "exec", ns, Daemon.ExportServerPath,
            "--blockdev", "driver=null-co,node-name=n,size=1048576,read-zeroes=on",
            "--nbd-server", $"addr.type=inet,addr.host={host},addr.port={port}",
            "--export", "type=nbd,id=e,node-name=n,name=n,writable=on",
        ];
        await using var near = await Daemon.StartAsync("/usr/sbin/ip", dir, Serve(hosts.NamespaceA!, "127.0.0.1", nearPort));
        await using var far = await Daemon.StartAsync("/usr/sbin/ip", dir, Serve(hosts.NamespaceB!, hosts.AddressB, hosts.PortB));

        await using var a = await JobDaemon.StartTcpAsync(dir, "a", hosts.NamespaceA, hosts.AddressA, hosts.PortA);
        foreach (var (node, host, port) in new[] { ("near", "127.0.0.1", nearPort), ("far", hosts.AddressB, hosts.PortB) })
        {
            await a.Qmp.ExecuteAsync("blockdev-add", new JsonObject
            {
                ["driver"] = "nbd", ["node-name"] = node, ["export"] = "n",
                ["server"] = new JsonObject { ["type"] = "inet", ["host"] = host, ["port"] = port.ToString() },
            });
        }

        var result = await hosts.RunOnAAsync("ss", "-H", "-tin", "state", "established", $"( dport = :{nearPort} or dport = :{hosts.PortB} )");
        result.Check("ss in A");
        var control = ControlByPeer(result.Stdout);
        var shown = $"ss in A:\n{result.Stdout}";
        Assert.True(control.TryGetValue("127.0.0.1", out var loopback) && Every(loopback, "cubic"), shown);
        Assert.True(control.TryGetValue(hosts.AddressB, out var other) && Every(other, "bbr"), shown);
    }

    /// <summary>
    /// The congestion control of each socket `ss -H -tin` lists, by peer address (IPv4-mapped
    /// addresses as IPv4; several sockets' joined by commas): ss prints a socket on a line with its addresses, then an indented line that begins
    /// with the congestion control's name.
    /// </summary>
    /// <summary>Two hosts (namespaces) whose host A defaults to BBR; a failure says why none could be made.</summary>
    private static async Task<HostPair> BbrHostsAsync()
    {
        var hosts = await HostPair.CreateAsync();
        try
        {
            Assert.True(hosts.Isolated, $"network namespaces are needed for a second host: {hosts.FallbackReason}");
            (await hosts.RunOnAAsync("sysctl", "-w", "net.ipv4.tcp_congestion_control=bbr")).Check("sysctl in A");
            return hosts;
        }
        catch
        {
            await hosts.DisposeAsync();
            throw;
        }
    }

    private static bool Every(string names, string name) => names.Split(',').All(n => n == name);

    private static Dictionary<string, string> ControlByPeer(string ss)
    {
        var lines = ss.Split('\n');
        var control = new Dictionary<string, string>();
        for (var i = 0; i + 1 < lines.Length; i++)
        {
            var fields = lines[i].Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length >= 4 && !char.IsWhiteSpace(lines[i][0]) && char.IsWhiteSpace(lines[i + 1].FirstOrDefault()))
            {
                var peer = fields[3][..fields[3].LastIndexOf(':')].Trim('[', ']').Replace("::ffff:", string.Empty);
                var name = lines[i + 1].Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[0];
                control[peer] = control.TryGetValue(peer, out var seen) ? seen + "," + name : name;
            }
        }

        return control;
    }
}
