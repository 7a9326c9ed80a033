using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Jobs.JobDaemon;

namespace ExportServer.IntegrationTests.Jobs;

/// <summary>
/// Live storage migration: daemon B exports an empty image over NBD, daemon A mirrors its disk into
/// it (an <c>nbd</c> target node) while a client writes to A's export, then the copies are equal.
/// Also across implementations, with qemu-storage-daemon on either side.
/// </summary>
public sealed class MigrationTests
{
    public static TheoryData<bool, bool, string> Pairs => new()
    {
        { false, false, "full" },
        { false, false, "top" },
        { false, true, "full" },
        { true, false, "full" },
    };

    [Theory]
    [MemberData(nameof(Pairs))]
    public async Task MirrorToARemoteExportWhileWriting(bool sourceIsQsd, bool targetIsQsd, string sync)
    {
        using var dir = new TempDir();
        var (src, dst) = await MigrationImages.CreateAsync(dir, sync);

        await using var b = await StartAsync(dir, "b", targetIsQsd);
        await b.AddImageAsync("target", dst);
        await b.ExportAsync("target");
        await using var a = await StartAsync(dir, "a", sourceIsQsd);
        await a.AddImageAsync("disk", src);
        await a.ExportAsync("disk");
        await a.Qmp.ExecuteAsync("blockdev-add", new JsonObject
        {
            ["driver"] = "nbd", ["node-name"] = "remote", ["export"] = "target",
            ["server"] = new JsonObject { ["type"] = "unix", ["path"] = b.NbdSocket },
        });
        await MigrationImages.MirrorWhileWritingAsync(a, sync);
        await a.Qmp.ExecuteAsync("quit");
        await b.Qmp.ExecuteAsync("quit");
        await a.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        await b.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        await AssertSameAsync(src, dst);
        await QemuIoAsync(dst, "qcow2", "read -P 0x66 12M 100k", "read -P 0x5b 31M 1M");
    }
}
