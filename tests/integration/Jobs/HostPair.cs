using ExportServer.IntegrationTests.Support;

namespace ExportServer.IntegrationTests.Jobs;

/// <summary>
/// Two hosts for a migration: two network namespaces joined by a veth pair, A at 10.x.y.1 and B at
/// 10.x.y.2 (x, y random, the names unique), torn down on dispose. Where namespaces cannot be made
/// (no CAP_NET_ADMIN), both "hosts" are this one on loopback and <see cref="Isolated"/> is false:
/// the caller must say so in its output.
/// </summary>
internal sealed class HostPair : IAsyncDisposable
{
    private readonly List<string> _namespaces = new();

    private HostPair()
    {
    }

    /// <summary>Whether A and B are separate network namespaces.</summary>
    public bool Isolated { get; private set; }

    /// <summary>Why the pair fell back to loopback (empty when isolated).</summary>
    public string FallbackReason { get; private set; } = string.Empty;

    public string? NamespaceA { get; private set; }

    public string? NamespaceB { get; private set; }

    public string AddressA { get; private set; } = "127.0.0.1";

    public string AddressB { get; private set; } = "127.0.0.1";

    public int PortA { get; private set; }

    public int PortB { get; private set; }

    public static async Task<HostPair> CreateAsync()
    {
        var pair = new HostPair();
        var tag = Guid.NewGuid().ToString("N")[..8];
        var (a, b) = ($"es-a-{tag}", $"es-b-{tag}");
        var add = await Tool.RunAsync("ip", "netns", "add", a);
        if (add.ExitCode != 0)
        {
            pair.FallbackReason = add.Stderr.Trim();
            pair.PortA = FreePort.Get();
            pair.PortB = FreePort.Get();
            return pair;
        }

        pair._namespaces.Add(a);
        try
        {
            (await Tool.RunAsync("ip", "netns", "add", b)).Check("ip netns add");
            pair._namespaces.Add(b);
            var net = $"10.{200 + Random.Shared.Next(50)}.{Random.Shared.Next(256)}";
            var (va, vb) = ($"esa{tag}", $"esb{tag}");
            string[] steps =
            [
                $"link add {va} netns {a} type veth peer name {vb} netns {b}",
                $"-n {a} addr add {net}.1/24 dev {va}",
                $"-n {b} addr add {net}.2/24 dev {vb}",
                $"-n {a} link set {va} up",
                $"-n {b} link set {vb} up",
                $"-n {a} link set lo up",
                $"-n {b} link set lo up",
            ];
            foreach (var step in steps)
            {
                (await Tool.RunAsync("ip", step.Split(' '))).Check("ip " + step);
            }

            (pair.NamespaceA, pair.NamespaceB, pair.Isolated) = (a, b, true);
            (pair.AddressA, pair.AddressB, pair.PortA, pair.PortB) = ($"{net}.1", $"{net}.2", 10809, 10809);
            return pair;
        }
        catch
        {
            await pair.DisposeAsync();
            throw;
        }
    }

    /// <summary>Runs <paramref name="file"/> on host A (inside its namespace when isolated).</summary>
    public Task<Tool.Result> RunOnAAsync(string file, params string[] args) =>
        NamespaceA is null ? Tool.RunAsync(file, args) : Tool.RunAsync("ip", new[] { "netns", "exec", NamespaceA, file }.Concat(args));

    /// <summary>Deletes the namespaces (their veth ends go with them). Stop the daemons inside first.</summary>
    public async ValueTask DisposeAsync()
    {
        foreach (var ns in _namespaces)
        {
            await Tool.RunAsync("ip", "netns", "del", ns);
        }

        _namespaces.Clear();
    }
}
