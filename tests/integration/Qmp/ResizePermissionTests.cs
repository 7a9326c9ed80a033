using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Jobs;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Qmp;

/// <summary>
/// Users of a node and what they let others do, as qemu-storage-daemon checks them: an NBD export
/// has a fixed size and lets nobody resize its node; a qcow2 node lets nobody else write or resize
/// its file; a raw window lets nobody resize its file. The refusals carry QEMU's words, word for
/// word, and once the export is gone the same resize succeeds.
/// </summary>
public sealed class ResizePermissionTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ChangesThatTakeAwayWhatAUserHoldsAreRefusedInQemusWords(bool qsd)
    {
        using var dir = new TempDir();
        await JobDaemon.QemuImgAsync("create", "-q", "-f", "qcow2", dir["a.qcow2"], "64M");
        await File.WriteAllBytesAsync(dir["b.raw"], new byte[8 << 20]);
        await using var d = await JobDaemon.StartAsync(dir, "d", qsd,
            "--blockdev", $"driver=file,node-name=f0,filename={dir["a.qcow2"]}",
            "--blockdev", "driver=qcow2,node-name=q0,file=f0",
            "--blockdev", $"driver=file,node-name=f1,filename={dir["b.raw"]}",
            "--blockdev", "driver=raw,node-name=r1,file=f1,size=4194304",
            "--export", "type=nbd,id=e0,node-name=q0,name=disk,writable=on");

        async Task<string> RefusalAsync(string command, JsonObject arguments)
        {
            var reply = await d.Qmp.SendAsync(command, arguments);
            Assert.Equal("GenericError", reply["error"]?["class"]?.GetValue<string>());
            return reply["error"]!["desc"]!.GetValue<string>();
        }

        JsonObject Resize(string node, long size) => new() { ["node-name"] = node, ["size"] = size };
        JsonObject Export(string id, string node, bool writable) => new() { ["type"] = "nbd", ["id"] = id, ["node-name"] = node, ["writable"] = writable };

        Assert.Equal(
            "Permission conflict on node 'q0': permissions 'resize' are both required by an unnamed block device (uses node 'q0' as 'root' child) " +
            "and unshared by an unnamed block device (uses node 'q0' as 'root' child).",
            await RefusalAsync("block_resize", Resize("q0", 128 << 20)));
        Assert.Equal(
            "Permission conflict on node 'f0': permissions 'resize' are both required by an unnamed block device (uses node 'f0' as 'root' child) " +
            "and unshared by node 'q0' (uses node 'f0' as 'file' child).",
            await RefusalAsync("block_resize", Resize("f0", 128 << 20)));
        Assert.Equal(
            "Permission conflict on node 'f0': permissions 'write' are both required by an unnamed block device (uses node 'f0' as 'root' child) " +
            "and unshared by node 'q0' (uses node 'f0' as 'file' child).",
            await RefusalAsync("block-export-add", Export("e1", "f0", writable: true)));
        Assert.Equal(
            "Permission conflict on node 'f0': permissions 'resize' are both required by node 'q0' (uses node 'f0' as 'file' child) " +
            "and unshared by an unnamed block device (uses node 'f0' as 'root' child).",
            await RefusalAsync("block-export-add", Export("e2", "f0", writable: false)));
        Assert.Equal(
            "Permission conflict on node 'f1': permissions 'resize' are both required by an unnamed block device (uses node 'f1' as 'root' child) " +
            "and unshared by node 'r1' (uses node 'f1' as 'file' child).",
            await RefusalAsync("block_resize", Resize("f1", 16 << 20)));
        Assert.Equal("Cannot resize fixed-size raw disks", await RefusalAsync("block_resize", Resize("r1", 16 << 20)));

        // The refused exports left nothing behind, and the export's client writes on.
        var exports = (JsonArray)await d.Qmp.ExecuteAsync("query-block-exports");
        Assert.Equal(["e0"], exports.Select(e => e!["id"]!.GetValue<string>()));
        var write = await Tool.NbdshAsync(d.NbdUri("disk"), "h.pwrite(b'\\x5a' * 65536, 1048576); h.flush()");
        Assert.True(write.ExitCode == 0, write.Stderr);

        // A raw node without a window passes its users through: its file can be exported writable.
        await d.Qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = "r1" });
        await d.Qmp.ExecuteAsync("block-export-add", Export("e3", "f1", writable: true));

        await d.Qmp.ExecuteAsync("block-export-del", new JsonObject { ["id"] = "e0" });
        await d.Qmp.WaitEventAsync("BLOCK_EXPORT_DELETED");
        await d.Qmp.ExecuteAsync("block_resize", Resize("q0", 128 << 20));
        var q0 = ((JsonArray)await d.Qmp.ExecuteAsync("query-named-block-nodes")).Single(n => n!["node-name"]!.GetValue<string>() == "q0")!;
        Assert.Equal(128L << 20, q0["image"]!["virtual-size"]!.GetValue<long>());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ANewNodeOverANodeInUseMustSuitItsOtherUsers(bool qsd)
    {
        using var dir = new TempDir();
        await JobDaemon.QemuImgAsync("create", "-q", "-f", "qcow2", dir["a.qcow2"], "64M");
        await using var d = await JobDaemon.StartAsync(dir, "d", qsd,
            "--blockdev", $"driver=file,node-name=f,filename={dir["a.qcow2"]}",
            "--export", "type=nbd,id=e,node-name=f,name=disk,writable=on");

        async Task<string?> AddAsync(JsonObject options)
        {
            var reply = await d.Qmp.SendAsync("blockdev-add", options);
            return reply["error"]?["desc"]?.GetValue<string>();
        }

        JsonObject Node(string driver, string name, bool readOnly = false, long? offset = null)
        {
            var o = new JsonObject { ["driver"] = driver, ["node-name"] = name, ["file"] = "f" };
            if (readOnly)
            {
                o["read-only"] = true;
            }

            if (offset is { } v)
            {
                o["offset"] = v;
            }

            return o;
        }

        // A format may not share its metadata file with a writer, even when it is itself read-only.
        Assert.Equal(
            "Permission conflict on node 'f': permissions 'write' are both required by an unnamed block device (uses node 'f' as 'root' child) " +
            "and unshared by node 'q' (uses node 'f' as 'file' child).",
            await AddAsync(Node("qcow2", "q")));
        Assert.Equal(
            "Permission conflict on node 'f': permissions 'write' are both required by an unnamed block device (uses node 'f' as 'root' child) " +
            "and unshared by node 'q2' (uses node 'f' as 'file' child).",
            await AddAsync(Node("qcow2", "q2", readOnly: true)));

        // raw passes its users through; a raw window keeps others from resizing its file.
        Assert.Null(await AddAsync(Node("raw", "r")));
        Assert.Null(await AddAsync(Node("raw", "r2", offset: 4096)));
        await d.Qmp.ExecuteAsync("block-export-del", new JsonObject { ["id"] = "e" });
        await d.Qmp.WaitEventAsync("BLOCK_EXPORT_DELETED");
        Assert.Equal(
            "Permission conflict on node 'f': permissions 'resize' are both required by node 'q3' (uses node 'f' as 'file' child) " +
            "and unshared by node 'r2' (uses node 'f' as 'file' child).",
            await AddAsync(Node("qcow2", "q3")));

        // Nothing of the refused nodes is left, and once the window is gone the qcow2 node opens.
        var names = ((JsonArray)await d.Qmp.ExecuteAsync("query-named-block-nodes")).Select(n => n!["node-name"]!.GetValue<string>()).Order();
        Assert.Equal(["f", "r", "r2"], names);
        await d.Qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = "r2" });
        Assert.Null(await AddAsync(Node("qcow2", "q3")));
        Assert.Equal(
            "Permission conflict on node 'f': permissions 'write' are both required by an unnamed block device (uses node 'f' as 'root' child) " +
            "and unshared by node 'q3' (uses node 'f' as 'file' child).",
            (await d.Qmp.SendAsync("block-export-add", new JsonObject { ["type"] = "nbd", ["id"] = "e2", ["node-name"] = "f", ["writable"] = true }))["error"]?["desc"]?.GetValue<string>());
    }
}
