using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;
using Xunit.Abstractions;
using static ExportServer.IntegrationTests.Jobs.JobDaemon;

namespace ExportServer.IntegrationTests.Jobs;

/// <summary>
/// Live storage migration between two hosts, each a network namespace: daemon B exports an empty
/// image over NBD on B's address; daemon A, in A, mirrors its disk (a qcow2 chain) into an nbd node
/// that connects to B, while a client in A writes to A's own export the whole time; then the job
/// completes and B's image equals A's. Without CAP_NET_ADMIN the same runs on loopback, and the
/// test output says so.
/// </summary>
public sealed class NamespaceMigrationTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("full")]
    [InlineData("top")]
    public async Task MirrorToAnotherHostWhileWriting(string sync)
    {
        using var dir = new TempDir();
        var (src, dst) = await MigrationImages.CreateAsync(dir, sync, topMiB: 10);

        await using var hosts = await HostPair.CreateAsync();
        if (!hosts.Isolated)
        {
            output.WriteLine($"network namespaces unavailable ({hosts.FallbackReason}): migration ran on loopback, not between two hosts");
        }

        await using (var b = await StartTcpAsync(dir, "b", hosts.NamespaceB, hosts.AddressB, hosts.PortB))
        await using (var a = await StartTcpAsync(dir, "a", hosts.NamespaceA, hosts.AddressA, hosts.PortA))
        {
            await b.AddImageAsync("target", dst);
            await b.ExportAsync("target");
            await a.AddImageAsync("disk", src);
            await a.ExportAsync("disk");
            await a.Qmp.ExecuteAsync("blockdev-add", new JsonObject
            {
                ["driver"] = "nbd", ["node-name"] = "remote", ["export"] = "target",
                ["server"] = new JsonObject { ["type"] = "inet", ["host"] = hosts.AddressB, ["port"] = hosts.PortB.ToString() },
            });
            await a.Qmp.ExecuteAsync("blockdev-mirror", new JsonObject
            {
                ["job-id"] = "mig", ["device"] = "disk", ["target"] = "remote", ["sync"] = sync, ["speed"] = 24L << 20,
            });

            // The guest on A writes before, during and after READY; it stops before the pivot.
            var ready = a.WaitJobEventAsync("BLOCK_JOB_READY", "mig");
            var (batches, afterReady) = (0, 0);
            for (; batches < 60 && afterReady < 2; batches++)
            {
                afterReady += ready.IsCompleted ? 1 : 0;
                var n = batches;
                var writes = Enumerable.Range(0, 6).SelectMany(i => new[] { "-c", $"write -P {(n * 6 + i) % 200 + 20} {(n * 6 + i) * 733 % 32000}k 20k" });
                (await hosts.RunOnAAsync("qemu-io", ["-f", "raw", .. writes, a.NbdUri("disk")])).Check("qemu-io on A");
            }

            await ready.WaitAsync(TimeSpan.FromSeconds(15));
            Assert.True(batches - afterReady > 0, "the guest wrote only after the job was ready");
            output.WriteLine($"{(hosts.Isolated ? $"namespaces {hosts.NamespaceA} -> {hosts.NamespaceB}" : "loopback")}: {batches} write batches, {batches - afterReady} before READY");
            await a.Qmp.ExecuteAsync("block-job-complete", new JsonObject { ["device"] = "mig" });
            var done = await a.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "mig");
            Assert.Null(done["error"]);

            // After the pivot A's export writes to B.
            (await hosts.RunOnAAsync("qemu-io", "-f", "raw", "-c", "write -P 0x66 12M 100k", a.NbdUri("disk"))).Check("qemu-io on A");
            await a.Qmp.ExecuteAsync("quit");
            await b.Qmp.ExecuteAsync("quit");
            await a.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
            await b.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        }

        await QemuIoAsync(dst, "qcow2", "read -P 0x66 12M 100k");
        await QemuIoAsync(src, "qcow2", "write -P 0x66 12M 100k");
        await AssertSameAsync(src, dst);
    }
}
