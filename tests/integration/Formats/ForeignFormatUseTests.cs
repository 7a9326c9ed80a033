using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Jobs;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Formats.ForeignImage;

namespace ExportServer.IntegrationTests.Formats;

/// <summary>
/// The foreign formats where users meet them: under a qcow2 overlay, probed by serve, as job
/// targets with format=, and surviving a kill -9 during allocating writes.
/// </summary>
public sealed class ForeignFormatUseTests
{
    [Theory]
    [InlineData("vpc", "")]
    [InlineData("vdi", "")]
    [InlineData("vhdx", "")]
    [InlineData("qed", "")]
    [InlineData("parallels", "")]
    public async Task KilledWriterLeavesAnImageQemuImgReads(string format, string options)
    {
        using var dir = new TempDir();
        var image = dir["img"];
        await ShAsync(dir, $"qemu-img create -q -f {format} {OptionArg(options)} img 1G");
        var slots = (1L << 30) / 262144;
        var writer = new DurableWriter(dir, 262144, [0, 512, 4096, 100000], [512, 4096, 65536, 100000]);
        var rnd = new Random(11);
        for (var round = 0; round < 4; round++)
        {
            var d = await ServeAsync(dir, format, image, writable: true);
            // Each round writes its own quarter of the slots.
            var writing = writer.StartRound(Uri(dir), round, round, slots, 4);
            await writer.WaitUntilWritingAsync(writing, round);
            await Task.Delay(400 + rnd.Next(800));
            d.Signal(9);
            await d.WaitForExitAsync(TimeSpan.FromSeconds(10));
            await d.DisposeAsync();
            await writer.EndRoundAsync(writing, round);
            if (format == "vhdx" && round % 2 == 1)
            {
                // A vhdx killed while writing has a log to replay: every other round qemu-img replays
                // it, in the others the next round's open here does.
                (await Tool.RunAsync("qemu-img", "check", "-r", "all", "-f", format, image)).Check($"round {round}: replay");
            }

            if (format == "qed")
            {
                // A qed killed while allocating has need-check set and clusters past its last link:
                // our read-write open checks it, cuts them off and clears the flag.
                await using (var reopened = await ServeAsync(dir, format, image, writable: true))
                {
                    Assert.Equal(0, await reopened.StopAsync());
                }
            }

            if (format == "parallels")
            {
                // A parallels image killed while open for writing is still marked in use (and has the
                // file grown ahead of its data): QEMU and we refuse to write it until qemu-img repairs it.
                var refused = await Tool.RunAsync("qemu-img", "check", "-f", format, image);
                Assert.Contains("image was not closed correctly", refused.Stderr);
                (await Tool.RunAsync("qemu-img", "check", "-r", "all", "-f", format, image)).Check($"round {round}: repair");
            }

            if (format != "vhdx" || round % 2 == 1)
            {
                await AssertCheckCleanAsync(image, format);
                (await Tool.RunAsync("qemu-img", "convert", "-U", "-f", format, "-O", "raw", image, dir["copy.raw"])).Check($"round {round}: convert");
            }
        }

        await writer.VerifyAsync(format, image, 20);
    }

    [Theory]
    [InlineData("vpc")]
    [InlineData("vdi")]
    [InlineData("vhdx")]
    [InlineData("qed")]
    [InlineData("parallels")]
    public async Task Qcow2OverlayOverTheFormatReadsAsQemuImgReadsIt(string format)
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -q -f {format} base {Size} && {Io(format, "base", Writes)}");
        await ShAsync(dir, $"qemu-img create -q -f qcow2 -b base -F {format} top.qcow2 && {Io("qcow2", "top.qcow2", Overwrites)}");
        await ShAsync(dir, "qemu-img convert -O raw top.qcow2 expected.raw");
        await using (var d = await ServeAsync(dir, "qcow2", dir["top.qcow2"], writable: true))
        {
            await AssertSameAsync(dir["expected.raw"], Uri(dir));
            (await Tool.ShAsync(Io("raw", Uri(dir), ["write -P 0x99 30M 1M"]))).Check("write");
        }

        (await Tool.ShAsync(Io("qcow2", dir["top.qcow2"], ["read -P 0x99 30M 1M", "read -P 0x44 20M 1M"]))).Check("read");
    }

    [Theory]
    [InlineData("vpc")]
    [InlineData("vdi")]
    [InlineData("vhdx")]
    [InlineData("qed")]
    [InlineData("parallels")]
    public async Task ServeProbesTheFormat(string format)
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -q -f {format} img {Size} && {Io(format, "img", Writes)} && qemu-img convert -O raw img expected.raw");
        await using var d = await Daemon.StartAsync(dir, "serve", dir["img"], "--socket", dir["nbd.sock"], "--name", "disk");
        await AssertSameAsync(dir["expected.raw"], Uri(dir));
        (await Tool.ShAsync(Io("raw", Uri(dir), ["write -P 0x42 5M 1M"]))).Check("write through the probed node");
    }

    /// <summary>`export-server mount IMAGE FILE`: the probed image as a regular file; writes through it leave an image qemu-img reads alike.</summary>
    [Theory]
    [InlineData("vpc")]
    [InlineData("vdi")]
    [InlineData("vhdx")]
    [InlineData("qed")]
    [InlineData("parallels")]
    public async Task MountedImageReadsAndWritesAsQemuImgDoes(string format)
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -q -f {format} img {Size} && {Io(format, "img", Writes)} && qemu-img convert -O raw img expected.raw");
        await MountedImage.CompareAndWriteAsync(dir, dir["img"], dir["expected.raw"], 3000000, 7000);

        await AssertCheckCleanAsync(dir["img"], format);
        await AssertSameAsync(dir["expected.raw"], dir["img"], format);
    }

    [Theory]
    [InlineData("vpc", "drive-backup")]
    [InlineData("vpc", "drive-mirror")]
    [InlineData("vdi", "drive-backup")]
    [InlineData("vdi", "drive-mirror")]
    [InlineData("vhdx", "drive-backup")]
    [InlineData("vhdx", "drive-mirror")]
    [InlineData("qed", "drive-backup")]
    [InlineData("qed", "drive-mirror")]
    [InlineData("parallels", "drive-backup")]
    [InlineData("parallels", "drive-mirror")]
    public async Task JobTargetsInTheFormat(string format, string command)
    {
        using var dir = new TempDir();
        // 67125248 bytes: a size vpc represents in CHS, so the target is made exactly as large.
        await ShAsync(dir, $"qemu-img create -q -f qcow2 src.qcow2 67125248 && {Io("qcow2", "src.qcow2", Writes)}");
        await using var d = await JobDaemon.StartAsync(dir, "a");
        await d.AddImageAsync("src", dir["src.qcow2"]);
        var args = new JsonObject
        {
            ["job-id"] = "j", ["device"] = "src", ["target"] = dir["target"], ["format"] = format, ["sync"] = "full",
        };
        await d.Qmp.ExecuteAsync(command, args);
        if (command == "drive-mirror")
        {
            await d.Qmp.WaitEventAsync("BLOCK_JOB_READY");
            await d.Qmp.ExecuteAsync("block-job-complete", new JsonObject { ["device"] = "j" });
        }

        var done = await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "j");
        Assert.Null(done["error"]);
        await d.Qmp.ExecuteAsync("quit");
        await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        await ShAsync(dir, "qemu-img convert -O raw src.qcow2 expected.raw");
        await AssertCheckCleanAsync(dir["target"], format);
        await AssertSameAsync(dir["expected.raw"], dir["target"], format);
    }
}
