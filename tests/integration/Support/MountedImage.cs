using Xunit;

namespace ExportServer.IntegrationTests.Support;

/// <summary>An image shown as a regular file by `export-server mount`, checked against qemu-img's view of it.</summary>
internal static class MountedImage
{
    /// <summary>
    /// Mounts <paramref name="image"/> as dir/disk.raw, checks the file equals <paramref name="expected"/>
    /// (qemu-img convert's output), writes <paramref name="writeBytes"/> random bytes at block
    /// <paramref name="seekBlocks"/> (4 KiB blocks) through the mount and the same into
    /// <paramref name="expected"/>, and unmounts with SIGTERM, which must exit 0. Returns the mount path.
    /// </summary>
    public static async Task<string> CompareAndWriteAsync(TempDir dir, string image, string expected, int writeBytes, int seekBlocks)
    {
        var mount = dir["disk.raw"];
        var pid = dir["m.pid"];
        var d = Daemon.Launch(Daemon.ExportServerPath, ["mount", image, mount, "--pidfile", pid]);
        await using (d)
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (!File.Exists(pid) && DateTime.UtcNow < deadline)
            {
                Assert.False(d.HasExited, d.Stderr);
                await Task.Delay(10);
            }

            (await Tool.RunAsync("cmp", mount, expected)).Check("cmp with qemu-img convert");
            (await Tool.ShAsync($"head -c {writeBytes} /dev/urandom > {dir["pat"]} && dd if={dir["pat"]} of={mount} bs=4096 seek={seekBlocks} conv=notrunc status=none && " +
                                $"dd if={dir["pat"]} of={expected} bs=4096 seek={seekBlocks} conv=notrunc status=none")).Check("dd");
            Assert.Equal(0, await d.StopAsync());
        }

        return mount;
    }
}
