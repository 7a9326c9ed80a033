using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Jobs.JobDaemon;

namespace ExportServer.IntegrationTests.Jobs;

/// <summary>
/// filter-node-name: while a job lives, its filter node is in query-named-block-nodes with QEMU's
/// driver (mirror_top, commit_top, copy-on-read, copy-before-write), named as asked or with an
/// automatic '#' name when not, its name cannot be taken by blockdev-add, the source's export goes
/// on working through it, and it is gone once the job is. Each case runs against
/// qemu-storage-daemon too, and both must show the same.
/// </summary>
public sealed class JobFilterTests
{
    private static readonly string[] FilterDrivers = ["mirror_top", "commit_top", "copy-on-read", "copy-before-write"];

    public static TheoryData<string, string> Cases => new()
    {
        { "blockdev-mirror", "mirror_top" },
        { "block-commit-active", "mirror_top" },
        { "block-commit", "commit_top" },
        { "block-stream", "copy-on-read" },
        { "blockdev-backup", "copy-before-write" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task TheFilterLivesAsLongAsTheJob(string command, string driver)
    {
        using var dir = new TempDir();
        await MakeChainAsync(dir);
        await QemuIoAsync(dir["top.qcow2"], "qcow2", "write -P 0x0d 12M 1M");
        var ours = await RunAsync(dir, false, command);
        var reference = await RunAsync(dir, true, command);
        Assert.Equal(reference, ours);
        // commit_top is read-only, as QEMU opens it without write access; the others take their source's flag.
        var shown = driver == "commit_top" ? "commit_top (ro)" : driver;
        Assert.Equal([$"named {shown}", "duplicate refused", "gone", $"implicit {shown}", "gone"], ours);
    }

    [Fact]
    public async Task BadOrTakenFilterNamesFailAsInQemuStorageDaemon()
    {
        using var dir = new TempDir();
        await QemuImgAsync("create", "-q", "-f", "raw", dir["s.raw"], "8M");
        await QemuImgAsync("create", "-q", "-f", "raw", dir["t.raw"], "8M");
        var errors = new List<List<string>>();
        foreach (var qsd in new[] { true, false })
        {
            await using var d = await StartAsync(dir, qsd ? "qsd" : "es", qsd);
            await d.AddImageAsync("src", dir["s.raw"], "raw");
            await d.AddImageAsync("tgt", dir["t.raw"], "raw");
            var list = new List<string>();
            foreach (var filterName in new[] { "1bad", "tgt" })
            {
                (string, JsonObject)[] calls =
                [
                    ("blockdev-mirror", new JsonObject { ["device"] = "src", ["target"] = "tgt", ["sync"] = "full" }),
                    ("blockdev-backup", new JsonObject { ["device"] = "src", ["target"] = "tgt", ["sync"] = "full" }),
                    ("block-stream", new JsonObject { ["device"] = "src" }),
                ];
                foreach (var (command, args) in calls)
                {
                    args["job-id"] = "j";
                    args["filter-node-name"] = filterName;
                    var (cls, desc) = await d.Qmp.ErrorAsync(command, args);
                    list.Add($"{command}: {cls}: {desc}");
                }
            }

            Assert.Empty((JsonArray)await d.Qmp.ExecuteAsync("query-block-jobs"));
            errors.Add(list);
        }

        Assert.Equal(errors[0], errors[1]);
    }

    /// <summary>commit_top is read-only even over a layer opened read-write, in both implementations.</summary>
    [Fact]
    public async Task CommitTopIsReadOnlyOverAWritableLayer()
    {
        using var dir = new TempDir();
        await QemuImgAsync("create", "-q", "-f", "qcow2", dir["base.qcow2"], "16M");
        await QemuImgAsync("create", "-q", "-f", "qcow2", dir["mid.qcow2"], "16M");
        await QemuIoAsync(dir["mid.qcow2"], "qcow2", "write -P 0x0c 0 8M");
        await QemuImgAsync("create", "-q", "-f", "qcow2", dir["top.qcow2"], "16M");
        var shown = new List<string>();
        foreach (var qsd in new[] { true, false })
        {
            await using var d = await StartAsync(dir, qsd ? "qsd" : "es", qsd);
            await d.AddImageAsync("base", dir["base.qcow2"]);
            foreach (var (layer, backing) in new[] { ("mid", "base"), ("top", "mid") })
            {
                await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject
                {
                    ["driver"] = "file", ["node-name"] = layer + "-file", ["filename"] = dir[layer + ".qcow2"],
                });
                await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject
                {
                    ["driver"] = "qcow2", ["node-name"] = layer, ["file"] = layer + "-file", ["backing"] = backing, ["read-only"] = false,
                });
            }

            await d.Qmp.ExecuteAsync("block-commit", new JsonObject
            {
                ["job-id"] = "j", ["device"] = "top", ["top-node"] = "mid", ["speed"] = 1, ["filter-node-name"] = "flt",
            });
            var (name, driver) = Assert.Single(await FiltersAsync(d));
            shown.Add($"{name} {driver}");
            await d.Qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = "j", ["force"] = true });
            await d.WaitStatusAsync("j", "null");
        }

        Assert.Equal(["flt commit_top (ro)", "flt commit_top (ro)"], shown);
    }

    /// <summary>
    /// The whole graph as query-named-block-nodes shows it (not flat) while each kind of job runs and
    /// after it is cancelled: node, driver, read-only, backing_file_depth and the backing-image chain
    /// of file names. Intermediate commit's commit_top sits on the overlay's backing link, and every
    /// filter is a level of its own, in both implementations.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public async Task TheGraphShowsTheFilterAsQemuDoes(string command, string driver)
    {
        var shapes = new List<List<string>>();
        foreach (var qsd in new[] { true, false })
        {
            using var dir = new TempDir();
            await MakeChainAsync(dir);
            await QemuImgAsync("create", "-q", "-f", "qcow2", dir["target.qcow2"], "16M");
            await using var d = await StartAsync(dir, "d", qsd);
            await d.AddImageAsync("top", dir["top.qcow2"]);
            await d.AddImageAsync("target", dir["target.qcow2"]);
            var args = command switch
            {
                "blockdev-mirror" or "blockdev-backup" => new JsonObject { ["device"] = "top", ["target"] = "target", ["sync"] = "full" },
                "block-commit" => new JsonObject { ["device"] = "top", ["top"] = dir["mid.qcow2"] },
                _ => new JsonObject { ["device"] = "top" },
            };
            args["job-id"] = "j";
            args["speed"] = 1;
            args["filter-node-name"] = "flt";
            await d.Qmp.ExecuteAsync(command == "block-commit-active" ? "block-commit" : command, args);
            var shape = await ShapeAsync(d, false);
            Assert.Contains(shape, line => line.StartsWith($"flt {driver} ", StringComparison.Ordinal));
            await d.Qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = "j", ["force"] = true });
            await d.WaitStatusAsync("j", "null");
            shape.Add("-- after");

            // After a cancelled active commit qemu-storage-daemon leaves the base read-write; we put it back
            // read-only as it was (checked below), so the base's flag is left out of the comparison there.
            shape.AddRange(await ShapeAsync(d, command == "block-commit-active"));
            shapes.Add(shape);
            if (!qsd && command == "block-commit-active")
            {
                var nodes = (JsonArray)await d.Qmp.ExecuteAsync("query-named-block-nodes");
                Assert.All(nodes.Where(n => n!["file"]!.GetValue<string>().EndsWith("base.qcow2")), n => Assert.True(n!["ro"]!.GetValue<bool>()));
            }
        }

        Assert.Equal(shapes[0], shapes[1]);
    }

    /// <summary>
    /// Each node as a line, sorted. A filter's own file name is left out of its chain: QEMU names a
    /// copy-on-read node by a json: description of its options, which is not reproduced here.
    /// </summary>
    private static async Task<List<string>> ShapeAsync(JobDaemon d, bool skipBaseReadOnly)
    {
        var nodes = (JsonArray)await d.Qmp.ExecuteAsync("query-named-block-nodes");
        var lines = new List<string>();
        foreach (var n in nodes)
        {
            var chain = new List<string>();
            for (var image = n!["image"]; image is not null; image = image["backing-image"])
            {
                chain.Add(Path.GetFileName(image["filename"]!.GetValue<string>()));
            }

            var drv = n["drv"]!.GetValue<string>();
            if (FilterDrivers.Contains(drv))
            {
                chain[0] = "(filter)";
            }

            var name = n["node-name"]!.GetValue<string>();
            var ro = skipBaseReadOnly && n["file"]!.GetValue<string>().EndsWith("base.qcow2") ? "?" : n["ro"]!.ToJsonString();
            lines.Add($"{(name.StartsWith('#') ? "#" : name)} {drv} ro={ro} depth={n["backing_file_depth"]} [{string.Join(' ', chain)}]");
        }

        lines.Sort(StringComparer.Ordinal);
        return lines;
    }

    /// <summary>base &lt;- mid &lt;- top, with data in base and mid and a top to write to.</summary>
    private static async Task MakeChainAsync(TempDir dir)
    {
        await QemuImgAsync("create", "-q", "-f", "qcow2", dir["base.qcow2"], "16M");
        await QemuIoAsync(dir["base.qcow2"], "qcow2", "write -P 0x0b 0 6M");
        await QemuImgAsync("create", "-q", "-f", "qcow2", "-b", dir["base.qcow2"], "-F", "qcow2", dir["mid.qcow2"]);
        await QemuIoAsync(dir["mid.qcow2"], "qcow2", "write -P 0x0c 6M 6M");
        await QemuImgAsync("create", "-q", "-f", "qcow2", "-b", dir["mid.qcow2"], "-F", "qcow2", dir["top.qcow2"]);
    }

    /// <summary>The case on one daemon, as lines: what the filter looked like while the job ran and after.</summary>
    private static async Task<List<string>> RunAsync(TempDir dir, bool qsd, string command)
    {
        var name = qsd ? "qsd" : "es";
        foreach (var image in new[] { "base", "mid", "top" })
        {
            File.Copy(dir[image + ".qcow2"], dir[$"{name}-{image}.qcow2"], overwrite: true);
        }

        await QemuImgAsync("rebase", "-u", "-f", "qcow2", "-b", dir[$"{name}-base.qcow2"], "-F", "qcow2", dir[$"{name}-mid.qcow2"]);
        await QemuImgAsync("rebase", "-u", "-f", "qcow2", "-b", dir[$"{name}-mid.qcow2"], "-F", "qcow2", dir[$"{name}-top.qcow2"]);
        await QemuImgAsync("create", "-q", "-f", "qcow2", dir[$"{name}-target.qcow2"], "16M");
        await using var d = await StartAsync(dir, name, qsd);
        await d.AddImageAsync("top", dir[$"{name}-top.qcow2"]);
        await d.AddImageAsync("target", dir[$"{name}-target.qcow2"]);
        await d.ExportAsync("top");
        var lines = new List<string>();
        foreach (var filterName in new[] { "flt", null })
        {
            var args = command switch
            {
                "blockdev-mirror" => new JsonObject { ["device"] = "top", ["target"] = "target", ["sync"] = "full" },
                "blockdev-backup" => new JsonObject { ["device"] = "top", ["target"] = "target", ["sync"] = "full" },
                "block-stream" => new JsonObject { ["device"] = "top" },
                "block-commit" => new JsonObject { ["device"] = "top", ["top"] = dir[$"{name}-mid.qcow2"] },
                _ => new JsonObject { ["device"] = "top" },
            };
            args["job-id"] = "j";
            args["speed"] = 1;
            args["auto-finalize"] = false;
            if (filterName is not null)
            {
                args["filter-node-name"] = filterName;
            }

            await d.Qmp.ExecuteAsync(command == "block-commit-active" ? "block-commit" : command, args);
            var filters = await FiltersAsync(d);
            var filter = Assert.Single(filters);
            lines.Add($"{(filterName is null ? filter.Name.StartsWith('#') ? "implicit" : filter.Name : filter.Name == filterName ? "named" : filter.Name)} {filter.Driver}");
            if (filterName is not null)
            {
                var (_, desc) = await d.Qmp.ErrorAsync("blockdev-add", new JsonObject { ["driver"] = "null-co", ["node-name"] = filterName });
                lines.Add(desc == $"Duplicate nodes with node-name='{filterName}'" ? "duplicate refused" : desc);
            }

            // The export reaches the source through the filter while the job runs.
            await QemuIoAsync(d.NbdUri("top"), "nbd", "write -P 0x3e 15M 64k", "read -P 0x3e 15M 64k");
            await d.Qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = "j", ["force"] = true });
            await d.WaitStatusAsync("j", "null");
            lines.Add((await FiltersAsync(d)).Count == 0 ? "gone" : "still there");
            await QemuIoAsync(d.NbdUri("top"), "nbd", "read -P 0x3e 15M 64k", "read -P 0x0d 12M 1M");
        }

        await d.Qmp.ExecuteAsync("quit");
        await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        return lines;
    }

    /// <summary>The filter nodes in query-named-block-nodes; Driver reads "driver (ro)" for a read-only one.</summary>
    private static async Task<List<(string Name, string Driver)>> FiltersAsync(JobDaemon d)
    {
        var nodes = (JsonArray)await d.Qmp.ExecuteAsync("query-named-block-nodes", new JsonObject { ["flat"] = true });
        return nodes.Where(n => FilterDrivers.Contains(n!["drv"]!.GetValue<string>()))
            .Select(n => (n!["node-name"]!.GetValue<string>(), n["drv"]!.GetValue<string>() + (n["ro"]!.GetValue<bool>() ? " (ro)" : string.Empty)))
            .ToList();
    }
}
