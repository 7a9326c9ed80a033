using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Qmp;
using ExportServer.IntegrationTests.Support;

namespace ExportServer.IntegrationTests.Jobs;

/// <summary>
/// A daemon (ours, or qemu-storage-daemon) with a QMP monitor and an NBD server on a unix socket,
/// plus the helpers the job tests share: images made with qemu-img, patterns written and checked
/// with qemu-io, and waiting for a job's events.
/// </summary>
internal sealed class JobDaemon : IAsyncDisposable
{
    private JobDaemon(Daemon daemon, QmpClient qmp, string nbdSocket, string? nbdTcp = null)
    {
        Process = daemon;
        Qmp = qmp;
        NbdSocket = nbdSocket;
        NbdTcp = nbdTcp;
    }

    public Daemon Process { get; }

    public QmpClient Qmp { get; }

    public string NbdSocket { get; }

    /// <summary>host:port of the NBD server when it listens on TCP (see <see cref="StartTcpAsync"/>).</summary>
    public string? NbdTcp { get; }

    public string NbdUri(string export) => NbdTcp is { } tcp ? $"nbd://{tcp}/{export}" : $"nbd+unix:///{export}?socket={NbdSocket}";

    public static async Task<JobDaemon> StartAsync(TempDir dir, string name, bool qsd = false, params string[] extra)
    {
        var monitor = dir[name + ".qmp"];
        var nbd = dir[name + ".nbd"];
        string[] args =
        [
            "--chardev", $"socket,id=m0,path={monitor},server=on,wait=off", "--monitor", "chardev=m0",
            "--nbd-server", $"addr.type=unix,addr.path={nbd}",
            .. extra,
        ];
        var daemon = qsd ? await Daemon.StartQsdAsync(dir, args) : await Daemon.StartAsync(dir, args);
        return new JobDaemon(daemon, await QmpClient.ConnectAsync(monitor), nbd);
    }

    /// <summary>
    /// Our daemon with its NBD server on TCP <paramref name="host"/>:<paramref name="port"/>, run in
    /// network namespace <paramref name="netns"/> (null: this one). The QMP monitor is a unix socket,
    /// which network namespaces do not separate, so the test reaches it either way.
    /// </summary>
    public static async Task<JobDaemon> StartTcpAsync(TempDir dir, string name, string? netns, string host, int port)
    {
        var monitor = dir[name + ".qmp"];
        string[] args =
        [
            "--chardev", $"socket,id=m0,path={monitor},server=on,wait=off", "--monitor", "chardev=m0",
            "--nbd-server", $"addr.type=inet,addr.host={host},addr.port={port}",
        ];
        var daemon = netns is null
            ? await Daemon.StartAsync(dir, args)
            : await Daemon.StartAsync("/usr/sbin/ip", dir, ["netns", "exec", netns, Daemon.ExportServerPath, .. args]);
        return new JobDaemon(daemon, await QmpClient.ConnectAsync(monitor), string.Empty, $"{host}:{port}");
    }

    /// <summary>blockdev-add of a qcow2 or raw image file.</summary>
    public Task<JsonNode> AddImageAsync(string nodeName, string file, string format = "qcow2") =>
        Qmp.ExecuteAsync("blockdev-add", new JsonObject
        {
            ["driver"] = format,
            ["node-name"] = nodeName,
            ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = file },
        });

    /// <summary>A writable NBD export of <paramref name="node"/> named like it.</summary>
    public Task<JsonNode> ExportAsync(string node) =>
        Qmp.ExecuteAsync("block-export-add", new JsonObject
        {
            ["type"] = "nbd",
            ["id"] = "exp-" + node,
            ["node-name"] = node,
            ["name"] = node,
            ["writable"] = true,
        });

    public async Task<JsonObject> WaitJobEventAsync(string name, string job) =>
        (JsonObject)(await Qmp.WaitEventAsync(name, e => e["data"]?["device"]?.GetValue<string>() == job))["data"]!;

    public Task WaitStatusAsync(string job, string status) =>
        Qmp.WaitEventAsync("JOB_STATUS_CHANGE", e => e["data"]!["id"]!.GetValue<string>() == job && e["data"]!["status"]!.GetValue<string>() == status);

    /// <summary>Runs blockdev-create as job <paramref name="id"/> to its end, dismisses it and returns its error (null: it succeeded).</summary>
    public async Task<string?> BlockdevCreateAsync(string id, JsonObject options)
    {
        await Qmp.ExecuteAsync("blockdev-create", new JsonObject { ["job-id"] = id, ["options"] = options });
        await WaitStatusAsync(id, "concluded");
        var job = ((JsonArray)await Qmp.ExecuteAsync("query-jobs")).Single(j => j!["id"]!.GetValue<string>() == id)!;
        await Qmp.ExecuteAsync("job-dismiss", new JsonObject { ["id"] = id });
        return (string?)job["error"];
    }

    public async Task<JsonObject?> BlockJobAsync(string job)
    {
        var list = (JsonArray)await Qmp.ExecuteAsync("query-block-jobs");
        return list.OfType<JsonObject>().FirstOrDefault(j => j["device"]!.GetValue<string>() == job);
    }

    public async ValueTask DisposeAsync()
    {
        await Qmp.DisposeAsync();
        await Process.DisposeAsync();
    }

    public static async Task QemuImgAsync(params string[] args) => (await Tool.RunAsync("qemu-img", args)).Check("qemu-img " + string.Join(' ', args));

    /// <summary>Runs qemu-io commands against an image (read-only checks use force-share).</summary>
    public static async Task<string> QemuIoAsync(string image, string format, params string[] commands)
    {
        var readOnly = commands.All(c => c.StartsWith("read", StringComparison.Ordinal));
        List<string> args = format == "nbd" ? ["-f", "raw"] : readOnly ? ["-r", "-U", "-f", format] : ["-f", format];
        foreach (var c in commands)
        {
            args.Add("-c");
            args.Add(c);
        }

        args.Add(image);
        var r = (await Tool.RunAsync("qemu-io", args)).Check("qemu-io " + string.Join(' ', commands));
        if (r.Stdout.Contains("Pattern verification failed", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"qemu-io {string.Join(' ', commands)} on {image}: {r.Stdout}");
        }

        return r.Stdout;
    }

    /// <summary>qemu-img compare must find the guest-visible contents equal.</summary>
    public static async Task AssertSameAsync(string a, string b, string formatA = "qcow2", string formatB = "qcow2")
    {
        var r = await Tool.RunAsync("qemu-img", "compare", "-U", "-f", formatA, "-F", formatB, a, b);
        if (r.ExitCode != 0)
        {
            throw new Xunit.Sdk.XunitException($"qemu-img compare {a} {b}: {r.Stdout}{r.Stderr}");
        }
    }
}
