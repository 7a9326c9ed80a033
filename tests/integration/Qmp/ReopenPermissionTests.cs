using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Jobs;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Qmp;

/// <summary>
/// A node that a writable export writes through cannot be reopened read-only: the reopen is
/// refused as qemu-storage-daemon refuses it, and the export's client goes on writing. Once the
/// writable export is gone, the same reopen succeeds (a read-only export does not hold it back).
/// </summary>
public sealed class ReopenPermissionTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ReopeningTheNodeOfAWritableExportReadOnlyIsRefused(bool qsd)
    {
        using var dir = new TempDir();
        await JobDaemon.QemuImgAsync("create", "-q", "-f", "qcow2", dir["top.qcow2"], "16M");
        await using var d = await JobDaemon.StartAsync(dir, "d", qsd,
            "--blockdev", $"driver=qcow2,node-name=top,file.driver=file,file.filename={dir["top.qcow2"]}",
            "--export", "type=nbd,id=rw,node-name=top,name=rw,writable=on",
            "--export", "type=nbd,id=ro,node-name=top,name=ro");

        var nodes = (JsonArray)await d.Qmp.ExecuteAsync("query-named-block-nodes", new JsonObject { ["flat"] = true });
        var file = nodes.Single(n => n!["drv"]!.GetValue<string>() == "file")!["node-name"]!.GetValue<string>();
        JsonObject Reopen(bool readOnly) => new()
        {
            ["options"] = new JsonArray(new JsonObject { ["driver"] = "qcow2", ["node-name"] = "top", ["file"] = file, ["read-only"] = readOnly }),
        };

        var refused = await d.Qmp.SendAsync("blockdev-reopen", Reopen(true));
        Assert.Equal("GenericError", refused["error"]?["class"]?.GetValue<string>());
        Assert.Equal("Read-only block node 'top' cannot support read-write users", refused["error"]!["desc"]!.GetValue<string>());

        var write = await Tool.NbdshAsync(d.NbdUri("rw"), "h.pwrite(b'\\x5a' * 65536, 1048576); h.flush(); assert h.pread(65536, 1048576) == b'\\x5a' * 65536");
        Assert.True(write.ExitCode == 0, write.Stderr);
        var nodeInfo = ((JsonArray)await d.Qmp.ExecuteAsync("query-named-block-nodes")).Single(n => n!["node-name"]!.GetValue<string>() == "top")!;
        Assert.False(nodeInfo["ro"]!.GetValue<bool>());

        await d.Qmp.ExecuteAsync("block-export-del", new JsonObject { ["id"] = "rw" });
        await d.Qmp.WaitEventAsync("BLOCK_EXPORT_DELETED");
        await d.Qmp.ExecuteAsync("blockdev-reopen", Reopen(true));
        nodeInfo = ((JsonArray)await d.Qmp.ExecuteAsync("query-named-block-nodes")).Single(n => n!["node-name"]!.GetValue<string>() == "top")!;
        Assert.True(nodeInfo["ro"]!.GetValue<bool>());

        var read = await Tool.NbdshAsync(d.NbdUri("ro"), "assert h.pread(65536, 1048576) == b'\\x5a' * 65536");
        Assert.True(read.ExitCode == 0, read.Stderr);
    }
}
