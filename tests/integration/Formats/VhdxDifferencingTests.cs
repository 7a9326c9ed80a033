using System.Security.Cryptography;
using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Jobs;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Formats.ForeignImage;

namespace ExportServer.IntegrationTests.Formats;

/// <summary>
/// Differencing VHDX images built byte by byte (<see cref="VhdxDifferencingImage"/>) over a parent
/// qemu-img made and wrote: the parent found through the locator's relative path, blocks fully and
/// partially present (sector bitmaps in two chunks), zero, unmapped and not present (the parent's
/// data). qemu-img 7.2 refuses differencing VHDX, so the expected content is the parent's as
/// qemu-img converts it, with the child's sectors laid over it as the fixture placed them.
/// </summary>
public sealed class VhdxDifferencingTests
{
    private const string ParentSize = "5G";

    /// <summary>Writes of every kind: into blocks not present (partial, whole, across two), into a partially present block over set and clear bits, into a zero block, unaligned, zeroes over the parent's data.</summary>
    private static readonly string[] ChildWrites =
    [
        "write -P 0x61 8M 4k", "write -P 0x62 2100736 1024", "write -P 0x63 4096M 1M", "write -z 10M 64K",
        "write -P 0x64 1049088 512", "write -P 0x65 4299162600 3000", "write -P 0x66 12M 2M", "write -P 0x67 20967424 8192",
        "write -P 0x68 8M 1M",
    ];

    private static async Task<VhdxDifferencingImage> BuildAsync(TempDir dir)
    {
        await ShAsync(dir, $"qemu-img create -q -f vhdx -o block_size=1M parent.vhdx {ParentSize}");
        (await Tool.ShAsync(Io("vhdx", dir["parent.vhdx"], ["write -P 0x11 0 4M", "write -P 0x12 4100M 1M", "write -P 0x13 5119M 1M", "write -P 0x14 8M 16M"]))).Check("parent writes");
        await ShAsync(dir, $"qemu-img create -q -f vhdx -o block_size=1M,block_state_zero=off child.vhdx {ParentSize}");
        var child = VhdxDifferencingImage.Open(dir["child.vhdx"]);
        child.MakeDifferencing(
        [
            ("parent_linkage", VhdxDifferencingImage.DataWriteGuid(dir["parent.vhdx"]).ToString("B")),
            ("relative_path", ".\\parent.vhdx"),
            ("absolute_win32_path", "C:\\images\\parent.vhdx"),
        ]);
        child.FullyPresent(0);
        child.NoStorage(1, 2);
        child.PartiallyPresent(2, [(0, 8), (9, 1), (100, 256), (2047, 1)]);
        child.NoStorage(3, 3);
        child.PartiallyPresent(4100, [(0, 1), (1024, 1024)]);
        child.FullyPresent(5119);
        child.Close();
        await ShAsync(dir, "qemu-img convert -f vhdx -O raw parent.vhdx expected.raw");
        child.Expected(dir["expected.raw"]);
        return child;
    }

    [Fact]
    public async Task ReadsTheChildOverItsParent()
    {
        using var dir = new TempDir();
        await BuildAsync(dir);
        var refused = await Tool.RunAsync("qemu-img", "info", "-f", "vhdx", dir["child.vhdx"]);
        Assert.NotEqual(0, refused.ExitCode);

        await using var d = await ServeAsync(dir, "vhdx", dir["child.vhdx"], writable: false);
        await AssertSameAsync(dir["expected.raw"], Uri(dir));

        // Block status: the ZERO block hides the parent's data under it (hole and zero, not the parent's data).
        var map = (await Tool.RunAsync("/usr/bin/nbdinfo", "--map", Uri(dir))).Check("map").Stdout;
        var extent = map.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Single(f => long.Parse(f[0]) <= 1 << 20 && (1 << 20) < long.Parse(f[0]) + long.Parse(f[1]));
        Assert.Equal("3", extent[2]);
    }

    [Fact]
    public async Task WritesKeepTheParentAndSurviveAKill()
    {
        using var dir = new TempDir();
        await BuildAsync(dir);
        var parentHash = SHA256.HashData(await File.ReadAllBytesAsync(dir["parent.vhdx"]));
        (await Tool.ShAsync(Io("raw", dir["expected.raw"], ChildWrites))).Check("expected writes");

        var killed = await ServeAsync(dir, "vhdx", dir["child.vhdx"], writable: true);
        (await Tool.ShAsync(Io("raw", Uri(dir), ChildWrites))).Check("writes");
        await AssertSameAsync(dir["expected.raw"], Uri(dir));
        killed.Signal(9);
        await killed.WaitForExitAsync(TimeSpan.FromSeconds(10));
        await killed.DisposeAsync();

        await using (var ro = await ServeAsync(dir, "vhdx", dir["child.vhdx"], writable: false))
        {
            await AssertSameAsync(dir["expected.raw"], Uri(dir));
        }

        await using (var rw = await ServeAsync(dir, "vhdx", dir["child.vhdx"], writable: true))
        {
            await AssertSameAsync(dir["expected.raw"], Uri(dir));
            (await Tool.ShAsync(Io("raw", Uri(dir), ["write -P 0x69 2M 1M"]))).Check("write after replay");
        }

        (await Tool.ShAsync(Io("raw", dir["expected.raw"], ["write -P 0x69 2M 1M"]))).Check("expected write");
        await using (var again = await ServeAsync(dir, "vhdx", dir["child.vhdx"], writable: false))
        {
            await AssertSameAsync(dir["expected.raw"], Uri(dir));
        }

        Assert.Equal(parentHash, SHA256.HashData(await File.ReadAllBytesAsync(dir["parent.vhdx"])));
    }

    [Fact]
    public async Task ParentChangedSinceTheChildWasMadeIsRefused()
    {
        using var dir = new TempDir();
        await BuildAsync(dir);
        (await Tool.ShAsync(Io("vhdx", dir["parent.vhdx"], ["write -P 0x15 0 4k"]))).Check("parent write");
        var d = Daemon.Launch(Daemon.ExportServerPath,
        [
            "--blockdev", $"driver=file,node-name=f0,filename={dir["child.vhdx"]},read-only=on",
            "--blockdev", "driver=vhdx,node-name=n0,file=f0,read-only=on",
        ]);
        Assert.NotEqual(0, await d.WaitForExitAsync(TimeSpan.FromSeconds(20)));
        Assert.Contains("was made from another state of its parent: its parent_linkage is {", d.Stderr, StringComparison.Ordinal);
        await d.DisposeAsync();

        // An explicit backing node replaces the locator's parent, as for qcow2.
        await using var other = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={dir["child.vhdx"]},read-only=on",
            "--blockdev", $$"""{"driver": "vhdx", "node-name": "n0", "file": "f0", "read-only": true, "backing": null}""",
            "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}",
            "--export", "type=nbd,id=e0,node-name=n0,name=disk");
        (await Tool.ShAsync(Io("raw", Uri(dir), ["read -P 0 8M 1M", "read -P 0 2101248 512", "read -P 0x80 0 512"]).Replace("-f raw", "-r -f raw", StringComparison.Ordinal))).Check("no parent: zeroes where it showed");
    }

    /// <summary>
    /// export-server create -f vhdx -b (which qemu-img refuses) makes a child of a vhdx parent, sized
    /// as the parent: it shows the parent, takes writes, and leaves the parent alone.
    /// </summary>
    [Fact]
    public async Task CreateMakesAChildThatShowsItsParent()
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -q -f vhdx parent.vhdx {Size}");
        (await Tool.ShAsync(Io("vhdx", dir["parent.vhdx"], Writes))).Check("parent writes");
        var parentHash = SHA256.HashData(await File.ReadAllBytesAsync(dir["parent.vhdx"]));
        var refused = await Tool.ShAsync($"cd '{dir.Path}' && qemu-img create -f vhdx -b parent.vhdx -F vhdx q.vhdx");
        Assert.Contains("Backing file not supported for file format 'vhdx'", refused.Stderr, StringComparison.Ordinal);
        await ShAsync(dir, $"{Daemon.ExportServerPath} create -q -f vhdx -b parent.vhdx -F vhdx child.vhdx");
        var wrongFormat = await Tool.ShAsync($"cd '{dir.Path}' && {Daemon.ExportServerPath} create -q -u -f vhdx -b parent.vhdx -F qcow2 other.vhdx 64M");
        Assert.Contains("the parent of a differencing image must be a vhdx image", wrongFormat.Stderr, StringComparison.Ordinal);

        await ShAsync(dir, "qemu-img convert -f vhdx -O raw parent.vhdx expected.raw");
        await using (var d = await ServeAsync(dir, "vhdx", dir["child.vhdx"], writable: true))
        {
            Assert.Equal(64L << 20, await ExportSizeAsync(Uri(dir)));
            await AssertSameAsync(dir["expected.raw"], Uri(dir));
            (await Tool.ShAsync(Io("raw", Uri(dir), Overwrites))).Check("child writes");
        }

        (await Tool.ShAsync(Io("raw", dir["expected.raw"], Overwrites))).Check("expected writes");
        await using (var ro = await ServeAsync(dir, "vhdx", dir["child.vhdx"], writable: false))
        {
            await AssertSameAsync(dir["expected.raw"], Uri(dir));
        }

        Assert.Equal(parentHash, SHA256.HashData(await File.ReadAllBytesAsync(dir["parent.vhdx"])));
    }

    /// <summary>blockdev-create takes backing-file for vhdx too (beyond QEMU's BlockdevCreateOptionsVhdx); a size other than the parent's is refused.</summary>
    [Fact]
    public async Task BlockdevCreateMakesAChild()
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -q -f vhdx parent.vhdx {Size}");
        (await Tool.ShAsync(Io("vhdx", dir["parent.vhdx"], ["write -P 0x42 1M 3M"]))).Check("parent write");
        await using var d = await JobDaemon.StartAsync(dir, "a");
        await ForeignFormatTests.CreateJobAsync(d, "c0", new JsonObject { ["driver"] = "file", ["filename"] = dir["child.vhdx"], ["size"] = 0 });
        await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "p", ["filename"] = dir["child.vhdx"] });
        await d.Qmp.ExecuteAsync("blockdev-create", new JsonObject
        {
            ["job-id"] = "bad", ["options"] = new JsonObject { ["driver"] = "vhdx", ["file"] = "p", ["size"] = 32 << 20, ["backing-file"] = "parent.vhdx" },
        });
        await d.WaitStatusAsync("bad", "concluded");
        var job = ((JsonArray)await d.Qmp.ExecuteAsync("query-jobs")).Single(j => j!["id"]!.GetValue<string>() == "bad")!;
        Assert.Equal("vhdx: a differencing image must have the size of its parent (67108864 bytes), not 33554432", job["error"]!.GetValue<string>());

        await ForeignFormatTests.CreateJobAsync(d, "c1", new JsonObject { ["driver"] = "vhdx", ["file"] = "p", ["size"] = 64 << 20, ["backing-file"] = "parent.vhdx" });
        await d.Qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = "p" });
        await d.AddImageAsync("img", dir["child.vhdx"], "vhdx");
        await d.ExportAsync("img");
        (await Tool.ShAsync(Io("raw", d.NbdUri("img"), ["read -P 0x42 1M 3M", "read -P 0 0 1M", "write -P 0x43 2M 4k"]))).Check("child reads its parent");
        (await Tool.ShAsync(Io("raw", d.NbdUri("img"), ["read -P 0x42 1M 1M", "read -P 0x43 2M 4k", "read -P 0x42 2101248 1M"]))).Check("child write over its parent");
    }
}
