using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Jobs;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Qmp;

/// <summary>
/// What the format drivers tell and make, side by side with qemu-storage-daemon: the 'image' of
/// query-named-block-nodes (format-specific, cluster-size, dirty-flag, backing names), the images
/// blockdev-create makes and the targets drive-mirror and drive-backup create.
/// </summary>
public sealed class ImageFormatTests
{
    /// <summary>The images both daemons open. QEMU 7.2 opens a relative data file name from its working directory, not the image's, so it is absolute.</summary>
    private const string Images =
        "qemu-img create -q -f qcow2 base.qcow2 16M && qemu-io -f qcow2 -c 'write 0 64k' base.qcow2 >/dev/null && " +
        "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 -o lazy_refcounts=on,extended_l2=on,compression_type=zstd,refcount_bits=8 top.qcow2 && " +
        "qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=4096 v2.qcow2 1M && " +
        "qemu-img create -q -f qcow2 -o data_file=$PWD/d.data,data_file_raw=on d.qcow2 1M && " +
        "qemu-img create -q -f raw r.raw 1M";

    /// <summary>Runs <paramref name="scenario"/> against our daemon and qemu-storage-daemon, each in a directory of its own made by <paramref name="setup"/>.</summary>
    private static async Task<(T Ours, T Theirs)> BothAsync<T>(TempDir dir, string setup, Func<JobDaemon, string, Task<T>> scenario, Func<string, string[]>? args = null)
    {
        var results = new List<T>();
        foreach (var qsd in new[] { false, true })
        {
            var name = qsd ? "q" : "o";
            var sub = dir[name];
            Directory.CreateDirectory(sub);
            (await Tool.ShAsync($"cd {sub} && {setup}")).Check("setup");
            await using var d = await JobDaemon.StartAsync(dir, name, qsd, args?.Invoke(sub) ?? []);
            results.Add(await scenario(d, sub));
        }

        return (results[0], results[1]);
    }

    /// <summary>
    /// <paramref name="node"/> with the directory taken out of every string and actual-size reduced to
    /// its presence (the space a file takes is the file system's business, not the format's).
    /// </summary>
    private static JsonNode Normalize(JsonNode node, string dir)
    {
        switch (node)
        {
            case JsonObject o:
                var copy = new JsonObject();
                foreach (var (key, value) in o)
                {
                    copy[key] = key == "actual-size" ? true : value is null ? null : Normalize(value, dir);
                }

                return copy;
            case JsonArray a:
                return new JsonArray(a.Select(e => e is null ? null : Normalize(e, dir)).ToArray());
            case JsonValue v when v.TryGetValue<string>(out var s):
                return s.Replace(dir + "/", string.Empty, StringComparison.Ordinal);
            default:
                return node.DeepClone();
        }
    }

    private static void AssertSame(JsonNode ours, JsonNode theirs) =>
        Assert.True(JsonNode.DeepEquals(ours, theirs), $"ours:   {ours.ToJsonString()}\ntheirs: {theirs.ToJsonString()}");

    private static async Task<JsonNode> QemuImgInfoAsync(string image, string dir) =>
        Normalize(JsonNode.Parse((await Tool.RunAsync("qemu-img", "info", "-U", "--output=json", image)).Check("info " + image).Stdout)!, dir);

    [Fact]
    public async Task QueryShowsEachImageAsQemuStorageDaemonDoes()
    {
        using var dir = new TempDir();
        string[] Args(string sub) =>
        [
            "--blockdev", $"driver=qcow2,node-name=top,read-only=on,file.driver=file,file.filename={sub}/top.qcow2",
            "--blockdev", $"driver=qcow2,node-name=v2,read-only=on,file.driver=file,file.filename={sub}/v2.qcow2",
            "--blockdev", $"driver=qcow2,node-name=d,read-only=on,file.driver=file,file.filename={sub}/d.qcow2",
            "--blockdev", $"driver=raw,node-name=r,file.driver=file,file.filename={sub}/r.raw",
            "--blockdev", "driver=null-co,node-name=nul",
        ];
        var (ours, theirs) = await BothAsync(dir, Images, async (d, sub) =>
        {
            var nodes = (JsonArray)await d.Qmp.ExecuteAsync("query-named-block-nodes");
            return nodes.Where(n => !n!["node-name"]!.GetValue<string>().StartsWith('#'))
                .ToDictionary(n => n!["node-name"]!.GetValue<string>(), n => Normalize(n!["image"]!, sub));
        }, Args);

        Assert.Equal(theirs.Keys.Order(), ours.Keys.Order());
        foreach (var (name, image) in theirs)
        {
            AssertSame(ours[name], image);
        }

        // What the comparison covers: the qcow2 record, cluster sizes and the header's backing names.
        Assert.Equal("zstd", ours["top"]["format-specific"]!["data"]!["compression-type"]!.GetValue<string>());
        Assert.Equal(4096, ours["v2"]["cluster-size"]!.GetValue<int>());
        Assert.Equal("base.qcow2", ours["top"]["backing-filename"]!.GetValue<string>());
        Assert.Equal("d.data", ours["d"]["format-specific"]!["data"]!["data-file"]!.GetValue<string>());
        Assert.False(ours["r"]["dirty-flag"]!.GetValue<bool>());
    }

    /// <summary>query-named-block-nodes shows each node's cache options, given or inherited from the parent that opened it, as QEMU does.</summary>
    [Fact]
    public async Task QueryShowsCacheOptionsAsQemuStorageDaemonDoes()
    {
        using var dir = new TempDir();
        string[] Args(string sub) =>
        [
            "--blockdev", $"driver=qcow2,node-name=q,cache.direct=on,file.node-name=qf,file.driver=file,file.filename={sub}/v2.qcow2",
            "--blockdev", $"driver=raw,node-name=r,cache.no-flush=on,file.node-name=rf,file.driver=file,file.filename={sub}/r.raw,file.cache.no-flush=off",
            "--blockdev", $"driver=file,node-name=plain,filename={sub}/r2.raw,cache.direct=off",
        ];
        var (ours, theirs) = await BothAsync(dir, Images + " && qemu-img create -q -f raw r2.raw 1M", async (d, _) =>
        {
            var nodes = (JsonArray)await d.Qmp.ExecuteAsync("query-named-block-nodes");
            var shown = new JsonObject();
            foreach (var n in nodes.Where(n => !n!["node-name"]!.GetValue<string>().StartsWith('#')).OrderBy(n => n!["node-name"]!.GetValue<string>()))
            {
                shown[n!["node-name"]!.GetValue<string>()] = n["cache"]!.DeepClone();
            }

            return (JsonNode)shown;
        }, Args);

        AssertSame(ours, theirs);
        Assert.True(ours["qf"]!["direct"]!.GetValue<bool>());
        Assert.False(ours["rf"]!["no-flush"]!.GetValue<bool>());
        Assert.True(ours["r"]!["no-flush"]!.GetValue<bool>());
    }

    [Fact]
    public async Task BlockdevCreateMakesWhatQemuStorageDaemonMakes()
    {
        using var dir = new TempDir();
        var (ours, theirs) = await BothAsync(dir, "qemu-img create -q -f qcow2 base.qcow2 8M", async (d, sub) =>
        {
            async Task CreateAsync(string id, JsonObject options)
            {
                await d.Qmp.ExecuteAsync("blockdev-create", new JsonObject { ["job-id"] = id, ["options"] = options });
                await d.WaitStatusAsync(id, "concluded");
                var job = ((JsonArray)await d.Qmp.ExecuteAsync("query-jobs")).Single(j => j!["id"]!.GetValue<string>() == id)!;
                Assert.Null(job["error"]);
                await d.Qmp.ExecuteAsync("job-dismiss", new JsonObject { ["id"] = id });
            }

            var results = new JsonObject();
            foreach (var (name, qcow2) in new (string, JsonObject)[]
            {
                ("plain.qcow2", new JsonObject { ["size"] = 8 << 20 }),
                ("full.qcow2", new JsonObject
                {
                    ["size"] = 8 << 20, ["cluster-size"] = 131072, ["lazy-refcounts"] = true, ["extended-l2"] = true,
                    ["compression-type"] = "zstd", ["refcount-bits"] = 8, ["backing-file"] = "base.qcow2", ["backing-fmt"] = "qcow2",
                }),
                ("v2.qcow2", new JsonObject { ["size"] = 4 << 20, ["version"] = "v2", ["preallocation"] = "metadata" }),
            })
            {
                var path = Path.Combine(sub, name);
                await CreateAsync("f-" + name, new JsonObject { ["driver"] = "file", ["filename"] = path, ["size"] = 0 });
                await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "p", ["filename"] = path });
                qcow2["driver"] = "qcow2";
                qcow2["file"] = "p";
                await CreateAsync("q-" + name, qcow2);
                await d.Qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = "p" });
                (await Tool.RunAsync("qemu-img", "check", "-U", path)).Check("check " + name);
                results[name] = await QemuImgInfoAsync(path, sub);
            }

            await CreateAsync("raw-file", new JsonObject { ["driver"] = "file", ["filename"] = Path.Combine(sub, "r.raw"), ["size"] = 12345 });
            results["r.raw"] = new FileInfo(Path.Combine(sub, "r.raw")).Length;

            // Drivers that create nothing are refused before a job starts.
            foreach (var options in new[] { """{"driver": "raw"}""", """{"driver": "raw", "size": 1}""", """{"driver": "nosuch"}""", """{"driver": "throttle"}""",
                                         """{"driver": "host_device"}""", """{"driver": "host_device", "filename": "/dev/null", "size": 1}""" })
            {
                var (cls, desc) = await d.Qmp.ErrorAsync("blockdev-create", new JsonObject { ["job-id"] = "x", ["options"] = JsonNode.Parse(options) });
                results[options] = $"{cls}: {desc}";
            }

            return (JsonNode)results;
        });
        AssertSame(ours, theirs);
    }

    /// <summary>
    /// The file driver's tuning options: an extent size hint beyond 32 bits fails the job with QEMU's
    /// words; nocow and a hint are applied where the file system has them and are no error where it
    /// has not, so both daemons leave files with the same attributes (lsattr) on this file system.
    /// </summary>
    [Fact]
    public async Task FileTuningOptionsAreAppliedOrRefusedAsQemuDoes()
    {
        using var dir = new TempDir();
        var (ours, theirs) = await BothAsync(dir, "true", async (d, sub) =>
        {
            var results = new JsonObject();
            foreach (var (id, extra) in new (string, JsonObject)[]
            {
                ("tuned", new JsonObject { ["nocow"] = true, ["extent-size-hint"] = 2 << 20 }),
                ("plain", new JsonObject()),
                ("huge", new JsonObject { ["extent-size-hint"] = 8L << 30 }),
            })
            {
                extra["driver"] = "file";
                extra["filename"] = Path.Combine(sub, id + ".raw");
                extra["size"] = 1 << 20;
                await d.Qmp.ExecuteAsync("blockdev-create", new JsonObject { ["job-id"] = id, ["options"] = extra });
                await d.WaitStatusAsync(id, "concluded");
                var job = ((JsonArray)await d.Qmp.ExecuteAsync("query-jobs")).Single(j => j!["id"]!.GetValue<string>() == id)!;
                var made = File.Exists(extra["filename"]!.GetValue<string>());
                var attrs = made ? (await Tool.RunAsync("lsattr", extra["filename"]!.GetValue<string>())).Check("lsattr").Stdout.Split(' ')[0] : "none";
                results[id] = $"error={job["error"]?.GetValue<string>() ?? "none"} attrs={attrs}";
            }

            return (JsonNode)results;
        });
        Assert.Equal("error=Extent size hint is too large attrs=none", ours["huge"]!.GetValue<string>());
        Assert.Equal(theirs.ToJsonString(), ours.ToJsonString());
    }

    [Fact]
    public async Task JobTargetsAreCreatedAsQemuStorageDaemonCreatesThem()
    {
        using var dir = new TempDir();
        string[] Args(string sub) =>
        [
            "--blockdev", $"driver=qcow2,node-name=src,file.driver=file,file.filename={sub}/top.qcow2",
        ];
        var (ours, theirs) = await BothAsync(dir, Images, async (d, sub) =>
        {
            async Task RunAsync(string command, string id, JsonObject args, bool mirror)
            {
                args["job-id"] = id;
                args["device"] = "src";
                await d.Qmp.ExecuteAsync(command, args);
                if (mirror)
                {
                    await d.WaitJobEventAsync("BLOCK_JOB_READY", id);
                    await d.Qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = id });
                }

                var done = await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", id);
                Assert.Null(done["error"]);
            }

            await RunAsync("drive-mirror", "m-top", new JsonObject
            {
                ["target"] = Path.Combine(sub, "m-top.qcow2"), ["format"] = "qcow2", ["sync"] = "top", ["mode"] = "absolute-paths",
            }, mirror: true);
            await RunAsync("drive-mirror", "m-raw", new JsonObject
            {
                ["target"] = Path.Combine(sub, "m-full.raw"), ["format"] = "raw", ["sync"] = "full",
            }, mirror: true);
            await RunAsync("drive-backup", "b-full", new JsonObject
            {
                ["target"] = Path.Combine(sub, "b-full.qcow2"), ["format"] = "qcow2", ["sync"] = "full",
            }, mirror: false);
            await d.Qmp.ExecuteAsync("quit");
            await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));

            var results = new JsonObject();
            foreach (var target in new[] { "m-top.qcow2", "m-full.raw", "b-full.qcow2" })
            {
                if (target.EndsWith(".qcow2", StringComparison.Ordinal))
                {
                    (await Tool.RunAsync("qemu-img", "check", "-U", Path.Combine(sub, target))).Check("check " + target);
                }

                results[target] = await QemuImgInfoAsync(Path.Combine(sub, target), sub);
            }

            return (JsonNode)results;
        }, Args);
        AssertSame(ours, theirs);
        Assert.Equal("base.qcow2", ours["m-top.qcow2"]!["backing-filename"]!.GetValue<string>());
    }
}
