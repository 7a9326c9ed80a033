using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Jobs;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Luks;

/// <summary>secret_keyring: a passphrase kept in the kernel keyring (added with keyctl) unlocks a LUKS image; QEMU's errors otherwise.</summary>
public sealed class SecretKeyringTests
{
    private static async Task<int> AddKeyAsync(string data) =>
        int.Parse((await Tool.RunAsync("keyctl", ["add", "user", $"es-test-{Guid.NewGuid():N}", data, "@u"])).Check("keyctl add").Stdout.Trim(),
            System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task KeyringSecretUnlocksALuksImage()
    {
        using var dir = new TempDir();
        await LuksImageTests.RunLuksCreateAsync($"cd {dir.Path} && qemu-img create -q -f luks --object secret,id=s0,data=ring-pass -o key-secret=s0,iter-time=10 img 8M");
        var serial = await AddKeyAsync("cmluZy1wYXNz");
        try
        {
            await using var d = await JobDaemon.StartAsync(dir, "a", false, "--object", $"secret_keyring,id=k0,serial={serial},format=base64");
            await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject
            {
                ["driver"] = "luks", ["node-name"] = "l", ["key-secret"] = "k0",
                ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = dir["img"] },
            });
            await d.ExportAsync("l");
            (await Tool.ShAsync($"qemu-io -f raw -c 'write -P 0x42 0 64k' -c 'read -P 0x42 0 64k' '{d.NbdUri("l")}'")).Check("qemu-io");

            // Removed from the keyring: a new object cannot load it, in QEMU's words.
            (await Tool.RunAsync("keyctl", ["unlink", serial.ToString(System.Globalization.CultureInfo.InvariantCulture), "@u"])).Check("unlink");

            // The kernel collects an unlinked key a moment later; until then a read is refused with
            // EACCES rather than ENOKEY. Wait until it is gone.
            for (var i = 0; i < 500; i++)
            {
                var read = await Tool.RunAsync("keyctl", ["read", serial.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
                if (read.Stderr.Contains("Required key not available", StringComparison.Ordinal))
                {
                    break;
                }

                await Task.Delay(20);
            }

            var (_, desc) = await d.Qmp.ErrorAsync("object-add", new JsonObject { ["qom-type"] = "secret_keyring", ["id"] = "k1", ["serial"] = serial });
            Assert.Equal($"Unable to read serial key {serial:x8}: Required key not available", desc);
            Assert.Equal("Parameter 'serial' is missing", (await d.Qmp.ErrorAsync("object-add", new JsonObject { ["qom-type"] = "secret_keyring", ["id"] = "k2" })).Desc);
        }
        finally
        {
            await Tool.RunAsync("keyctl", ["unlink", serial.ToString(System.Globalization.CultureInfo.InvariantCulture), "@u"]);
        }

        (await Tool.ShAsync($"qemu-io --object secret,id=s0,data=ring-pass --image-opts 'driver=luks,key-secret=s0,file.filename={dir["img"]}' -c 'read -P 0x42 0 64k'")).Check("read back");
    }
}
