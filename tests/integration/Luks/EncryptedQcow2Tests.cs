using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Jobs;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Formats.ForeignImage;

namespace ExportServer.IntegrationTests.Luks;

/// <summary>
/// qcow2 images with encrypt.format=luks (and the legacy aes) against qemu-img and qemu-io with the same
/// secret: QEMU's data read as qemu-img convert reads it, ours decrypted by QEMU, images we create
/// checked clean, chains with one encrypted layer, key slots amended, and refusals in QEMU's words.
/// </summary>
public sealed class EncryptedQcow2Tests
{
    private const string Passphrase = "qcow2 passphrase 7";
    private const string SecretArg = "secret,id=s0,data=" + Passphrase;

    /// <summary>QEMU's --image-opts for an encrypted qcow2 file unlocked with secret s0.</summary>
    private static string Opts(string file) => $"driver=qcow2,encrypt.key-secret=s0,file.filename={file}";

    private static string QemuIo(string file, IEnumerable<string> commands) =>
        $"qemu-io --object '{SecretArg}' --image-opts '{Opts(file)}' {string.Join(' ', commands.Select(c => $"-c '{c}'"))} >/dev/null";

    private static Task CreateWithQemuAsync(TempDir dir, string name, string options, string extra = "") =>
        LuksImageTests.RunLuksCreateAsync(
            $"cd '{dir.Path}' && qemu-img create -q -f qcow2 --object '{SecretArg}' -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10" +
            $"{(options.Length > 0 ? "," + options : string.Empty)} {extra} {name} {Size}");

    private static Task ConvertToRawAsync(TempDir dir, string image, string raw) =>
        ShAsync(dir, $"qemu-img convert --object '{SecretArg}' --image-opts '{Opts(image)}' -O raw {raw}");

    private static Task AssertQemuCheckCleanAsync(TempDir dir, string image) =>
        ShAsync(dir, $"qemu-img check --object '{SecretArg}' --image-opts '{Opts(image)}'");

    private static Task<Daemon> ServeAsync(TempDir dir, string image, bool writable, string format = "luks")
    {
        var ro = writable ? string.Empty : ",read-only=on";
        return Daemon.StartAsync(dir,
            "--object", SecretArg,
            "--blockdev", $"driver=file,node-name=f0,filename={image}{ro}",
            "--blockdev", $"driver=qcow2,node-name=n0,file=f0,encrypt.format={format},encrypt.key-secret=s0{ro}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}",
            "--export", $"type=nbd,id=e0,node-name=n0,name=disk,writable={(writable ? "on" : "off")}");
    }

    public static TheoryData<string> Ciphers { get; } =
    [
        string.Empty,
        "encrypt.cipher-alg=aes-128,encrypt.hash-alg=sha1",
        "encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256",
    ];

    /// <summary>QEMU's writes (plain and compressed clusters, zeroes) read as qemu-img convert reads them.</summary>
    [Theory]
    [MemberData(nameof(Ciphers))]
    public async Task QemuImagesReadAsQemuImgConvertReadsThem(string options)
    {
        using var dir = new TempDir();
        await CreateWithQemuAsync(dir, "img", options);
        await ShAsync(dir, QemuIo("img", [.. Writes, "write -c -P 0x99 30M 64K"]));
        await ConvertToRawAsync(dir, "img", "expected.raw");
        await using var d = await ServeAsync(dir, dir["img"], writable: false);
        Assert.Equal(64L << 20, await ExportSizeAsync(Uri(dir)));
        await AssertSameAsync(dir["expected.raw"], Uri(dir));
    }

    /// <summary>Our writes (allocating, in place, partial sectors, zeroes) decrypt in QEMU; the image checks clean.</summary>
    [Theory]
    [MemberData(nameof(Ciphers))]
    public async Task OurWritesDecryptInQemu(string options)
    {
        using var dir = new TempDir();
        await CreateWithQemuAsync(dir, "img", options);
        await ShAsync(dir, QemuIo("img", ["write -P 0x12 2M 1M"]));
        await ConvertToRawAsync(dir, "img", "expected.raw");
        await ShAsync(dir, Io("raw", "expected.raw", [.. Writes, .. Overwrites]));
        foreach (var commands in new[] { Writes, Overwrites })
        {
            await using var d = await ServeAsync(dir, dir["img"], writable: true);
            (await Tool.ShAsync(Io("raw", Uri(dir), commands))).Check("writes over NBD");
            Assert.Equal(0, await d.StopAsync());
        }

        await ShAsync(dir, $"qemu-img compare --object '{SecretArg}' --image-opts 'driver=raw,file.filename=expected.raw' '{Opts("img")}'");
        await AssertQemuCheckCleanAsync(dir, "img");
    }

    /// <summary>The plaintext never reaches the disk: a written pattern is nowhere in the image file.</summary>
    [Fact]
    public async Task WrittenPlaintextIsNotOnDisk()
    {
        using var dir = new TempDir();
        await CreateWithQemuAsync(dir, "img", string.Empty);
        var marker = "QCOW2-PLAINTEXT-MARKER-42"u8.ToArray();
        var data = Enumerable.Repeat(marker, (256 << 10) / marker.Length + 1).SelectMany(b => b).Take(256 << 10).ToArray();
        File.WriteAllBytes(dir["data"], data);
        await using (var d = await ServeAsync(dir, dir["img"], writable: true))
        {
            (await Tool.ShAsync($"/usr/bin/python3 -c \"import nbd; h=nbd.NBD(); h.connect_uri('{Uri(dir)}'); h.pwrite(open('{dir["data"]}','rb').read(), 5<<20); h.flush(); h.shutdown()\"")).Check("write");
            Assert.Equal(0, await d.StopAsync());
        }

        Assert.Equal(-1, File.ReadAllBytes(dir["img"]).AsSpan().IndexOf(marker));
        await ConvertToRawAsync(dir, "img", "back.raw");
        Assert.Equal(data, File.ReadAllBytes(dir["back.raw"]).AsSpan(5 << 20, data.Length).ToArray());
    }

    /// <summary>
    /// `export-server create` with --object and the encrypt.* options qemu-img takes, and blockdev-create:
    /// qemu-img checks the images clean, reads our data and shows the cipher asked for.
    /// </summary>
    [Theory]
    [InlineData("", "aes-256", "xts")]
    [InlineData(",encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.hash-alg=sha512", "aes-128", "cbc")]
    public async Task ImagesWeCreateOpenInQemu(string options, string cipher, string mode)
    {
        using var dir = new TempDir();
        var r = await Tool.RunAsync(Daemon.ExportServerPath, "create", "--object", SecretArg, "-f", "qcow2",
            "-o", "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10" + options, dir["cli.qcow2"], "32M");
        r.Check("create");
        Assert.Contains("encrypt.format=luks encrypt.key-secret=s0", r.Stdout, StringComparison.Ordinal);
        await using (var d = await JobDaemon.StartAsync(dir, "a", false, "--object", SecretArg))
        {
            Assert.Null(await d.BlockdevCreateAsync("c0", new JsonObject { ["driver"] = "file", ["filename"] = dir["qmp.qcow2"], ["size"] = 0 }));
            await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "p", ["filename"] = dir["qmp.qcow2"] });
            Assert.Null(await d.BlockdevCreateAsync("c1", new JsonObject
            {
                ["driver"] = "qcow2", ["file"] = "p", ["size"] = 32 << 20,
                ["encrypt"] = new JsonObject { ["format"] = "luks", ["key-secret"] = "s0", ["iter-time"] = 10, ["cipher-alg"] = cipher, ["cipher-mode"] = mode },
            }));
            await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject
            {
                ["driver"] = "qcow2", ["node-name"] = "q", ["file"] = "p", ["encrypt"] = new JsonObject { ["format"] = "luks", ["key-secret"] = "s0" },
            });
            await d.ExportAsync("q");
            (await Tool.ShAsync(Io("raw", d.NbdUri("q"), ["write -P 0x3c 2M 1M", "write -P 0x4d 31M 1M"]))).Check("write");
            await d.Qmp.ExecuteAsync("quit");
            await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        }

        foreach (var image in new[] { "cli.qcow2", "qmp.qcow2" })
        {
            await AssertQemuCheckCleanAsync(dir, image);
            var info = JsonNode.Parse((await Tool.ShAsync($"qemu-img info --output=json --object '{SecretArg}' --image-opts '{Opts(dir[image])}'")).Check("info").Stdout)!;
            Assert.True(info["encrypted"]!.GetValue<bool>());
            var encrypt = info["format-specific"]!["data"]!["encrypt"]!;
            Assert.Equal(("luks", cipher, mode), (encrypt["format"]!.GetValue<string>(), encrypt["cipher-alg"]!.GetValue<string>(), encrypt["cipher-mode"]!.GetValue<string>()));
            (await Tool.ShAsync(QemuIo(dir[image], ["write -P 0x5e 7M 64K", "read -P 0x5e 7M 64K", "read -P 0 0 1M"]))).Check("qemu-io on our image");
        }

        (await Tool.ShAsync(QemuIo(dir["qmp.qcow2"], ["read -P 0x3c 2M 1M", "read -P 0x4d 31M 1M"]))).Check("our data in qemu-io");
    }

    /// <summary>An encrypted overlay over a plain backing file, and a plain overlay over an encrypted backing file.</summary>
    [Fact]
    public async Task ChainsWithOneEncryptedLayer()
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -q -f qcow2 plain.qcow2 {Size} && " + Io("qcow2", "plain.qcow2", ["write -P 0x21 0 4M", "write -P 0x22 60M 1M"]));
        await CreateWithQemuAsync(dir, "enc-top.qcow2", string.Empty, "-b plain.qcow2 -F qcow2");
        await ShAsync(dir, QemuIo("enc-top.qcow2", ["write -P 0x23 1M 1M"]));
        await ConvertToRawAsync(dir, "enc-top.qcow2", "top.raw");

        await CreateWithQemuAsync(dir, "enc-base.qcow2", string.Empty);
        await ShAsync(dir, QemuIo("enc-base.qcow2", ["write -P 0x31 0 4M", "write -P 0x32 60M 1M"]));
        await ShAsync(dir, "qemu-img create -q -f qcow2 -b enc-base.qcow2 -F qcow2 plain-top.qcow2");
        var baseOpts = $"driver=qcow2,file.filename=plain-top.qcow2,backing.driver=qcow2,backing.file.filename=enc-base.qcow2,backing.encrypt.key-secret=s0";
        await ShAsync(dir, $"qemu-io --object '{SecretArg}' --image-opts '{baseOpts}' -c 'write -P 0x33 1M 1M' >/dev/null");
        await ShAsync(dir, $"qemu-img convert --object '{SecretArg}' --image-opts '{baseOpts}' -O raw base.raw");

        await using var d = await JobDaemon.StartAsync(dir, "a", false, "--object", SecretArg);
        await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject
        {
            ["driver"] = "qcow2", ["node-name"] = "t1", ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = dir["enc-top.qcow2"] },
            ["encrypt"] = new JsonObject { ["format"] = "luks", ["key-secret"] = "s0" },
        });
        await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject
        {
            ["driver"] = "qcow2", ["node-name"] = "b2", ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = dir["enc-base.qcow2"] },
            ["encrypt"] = new JsonObject { ["format"] = "luks", ["key-secret"] = "s0" },
        });
        await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject
        {
            ["driver"] = "qcow2", ["node-name"] = "t2", ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = dir["plain-top.qcow2"] }, ["backing"] = "b2",
        });
        await d.ExportAsync("t1");
        await d.ExportAsync("t2");
        await AssertSameAsync(dir["top.raw"], d.NbdUri("t1"));
        await AssertSameAsync(dir["base.raw"], d.NbdUri("t2"));

        var nodes = ((JsonArray)await d.Qmp.ExecuteAsync("query-named-block-nodes")).OfType<JsonObject>()
            .Where(n => n["node-name"]!.GetValue<string>() is "t1" or "b2" or "t2")
            .ToDictionary(n => n["node-name"]!.GetValue<string>(), n => n["encrypted"]!.GetValue<bool>());
        Assert.Equal(new Dictionary<string, bool> { ["t1"] = true, ["b2"] = true, ["t2"] = false }, nodes);
    }

    /// <summary>Wrong, missing and mismatched encryption options are refused in QEMU's words; the daemon stays up.</summary>
    [Fact]
    public async Task BadSecretsAndOptionsAreRefused()
    {
        using var dir = new TempDir();
        await CreateWithQemuAsync(dir, "img", string.Empty);
        await ShAsync(dir, $"qemu-img create -q -f qcow2 plain.qcow2 {Size} && " + Io("qcow2", "plain.qcow2", ["write -P 0x61 0 1M"]));
        const string wrong = "wrong-qcow2-passphrase";
        await using var d = await JobDaemon.StartAsync(dir, "a", false, "--object", $"secret,id=bad,data={wrong}", "--object", SecretArg);
        await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "p", ["filename"] = dir["img"] });
        await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "pp", ["filename"] = dir["plain.qcow2"] });
        async Task<string> Refusal(string file, JsonObject? encrypt)
        {
            var options = new JsonObject { ["driver"] = "qcow2", ["node-name"] = "q", ["file"] = file };
            if (encrypt is not null)
            {
                options["encrypt"] = encrypt;
            }

            return (await d.Qmp.ErrorAsync("blockdev-add", options)).Desc;
        }

        Assert.Equal("Invalid password, cannot unlock any keyslot", await Refusal("p", new JsonObject { ["format"] = "luks", ["key-secret"] = "bad" }));
        Assert.Equal("Parameter 'encrypt.key-secret' is required for cipher", await Refusal("p", null));
        Assert.Equal("Header reported 'luks' encryption format but options specify 'aes'", await Refusal("p", new JsonObject { ["format"] = "aes", ["key-secret"] = "s0" }));
        Assert.Equal("No encryption in image header, but options specified format 'luks'", await Refusal("pp", new JsonObject { ["format"] = "luks", ["key-secret"] = "s0" }));
        Assert.Equal("No secret with id 'nope'", await Refusal("p", new JsonObject { ["format"] = "luks", ["key-secret"] = "nope" }));

        await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject
        {
            ["driver"] = "qcow2", ["node-name"] = "q", ["file"] = "p", ["encrypt"] = new JsonObject { ["format"] = "luks", ["key-secret"] = "s0" },
        });
        var nodes = (await d.Qmp.ExecuteAsync("query-named-block-nodes")).ToJsonString();
        Assert.DoesNotContain(wrong, nodes, StringComparison.Ordinal);
        Assert.DoesNotContain(Passphrase, nodes, StringComparison.Ordinal);

        // Creation: a secret is needed, and preallocated clusters (zeroes that would decrypt to noise) are refused.
        Assert.Null(await d.BlockdevCreateAsync("c0", new JsonObject { ["driver"] = "file", ["filename"] = dir["new.qcow2"], ["size"] = 0 }));
        await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "np", ["filename"] = dir["new.qcow2"] });
        Assert.Equal("Parameter 'encrypt.key-secret' is required for cipher", await d.BlockdevCreateAsync("c1", new JsonObject
        {
            ["driver"] = "qcow2", ["file"] = "np", ["size"] = 1 << 20, ["encrypt"] = new JsonObject { ["format"] = "luks" },
        }));
        Assert.Equal("Preallocation is not supported with encryption here (use preallocation=off)", await d.BlockdevCreateAsync("c2", new JsonObject
        {
            ["driver"] = "qcow2", ["file"] = "np", ["size"] = 1 << 20, ["preallocation"] = "metadata",
            ["encrypt"] = new JsonObject { ["format"] = "luks", ["key-secret"] = "s0" },
        }));

        // Compressed clusters would leave the data unencrypted: refused, as qemu-img convert -c refuses it;
        // the job reports the errno, as QEMU's jobs do.
        await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "qcow2", ["node-name"] = "src", ["file"] = "pp" });
        await d.Qmp.ExecuteAsync("blockdev-backup", new JsonObject
        {
            ["job-id"] = "b", ["device"] = "src", ["target"] = "q", ["sync"] = "full", ["compress"] = true,
        });
        var completed = await d.WaitJobEventAsync("BLOCK_JOB_COMPLETED", "b");
        Assert.Equal("Operation not supported", (string?)completed["error"]);
        Assert.NotNull(await d.Qmp.ExecuteAsync("query-named-block-nodes"));
    }

    private static async Task<string?> AmendAsync(JobDaemon d, string id, string node, JsonObject options, bool force = false)
    {
        await d.Qmp.ExecuteAsync("x-blockdev-amend", new JsonObject { ["job-id"] = id, ["node-name"] = node, ["options"] = options, ["force"] = force });
        await d.WaitStatusAsync(id, "concluded");
        var job = ((JsonArray)await d.Qmp.ExecuteAsync("query-jobs")).Single(j => j!["id"]!.GetValue<string>() == id)!;
        Assert.Equal("amend", job["type"]!.GetValue<string>());
        await d.Qmp.ExecuteAsync("job-dismiss", new JsonObject { ["id"] = id });
        return (string?)job["error"];
    }

    /// <summary>
    /// x-blockdev-amend on qcow2's encrypt and on a luks node: a slot added opens the image in qemu-img with
    /// the new secret; erasing the last slot, overwriting an active one and unmatched secrets are refused.
    /// </summary>
    [Fact]
    public async Task AmendAddsAndErasesKeySlots()
    {
        using var dir = new TempDir();
        await CreateWithQemuAsync(dir, "img", string.Empty);
        await LuksImageTests.RunLuksCreateAsync($"cd '{dir.Path}' && qemu-img create -q -f luks --object '{SecretArg}' -o key-secret=s0,iter-time=10 raw.luks 1M");
        const string second = "second passphrase";
        await using (var d = await JobDaemon.StartAsync(dir, "a", false, "--object", SecretArg, "--object", $"secret,id=s1,data={second}"))
        {
            await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject
            {
                ["driver"] = "qcow2", ["node-name"] = "q", ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = dir["img"] },
                ["encrypt"] = new JsonObject { ["format"] = "luks", ["key-secret"] = "s0" },
            });
            await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject
            {
                ["driver"] = "luks", ["node-name"] = "l", ["key-secret"] = "s0", ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = dir["raw.luks"] },
            });
            JsonObject Encrypt(JsonObject luks)
            {
                luks["format"] = "luks";
                return new JsonObject { ["driver"] = "qcow2", ["encrypt"] = luks };
            }

            Assert.Equal("Attempt to erase the only active keyslot 0 which will erase all the data in the image irreversibly - refusing operation",
                await AmendAsync(d, "j1", "q", Encrypt(new JsonObject { ["state"] = "inactive", ["keyslot"] = 0 })));
            Assert.Equal("'new-secret' is required to activate a keyslot",
                await AmendAsync(d, "j2", "q", Encrypt(new JsonObject { ["state"] = "active" })));
            Assert.Equal("Refusing to overwrite active keyslot 0 - please erase it first",
                await AmendAsync(d, "j3", "q", Encrypt(new JsonObject { ["state"] = "active", ["new-secret"] = "s1", ["keyslot"] = 0 })));
            Assert.Null(await AmendAsync(d, "j4", "q", Encrypt(new JsonObject { ["state"] = "active", ["new-secret"] = "s1", ["iter-time"] = 10 })));
            Assert.Equal("Refusing to overwrite active keyslot 1 - please erase it first",
                await AmendAsync(d, "j5", "q", Encrypt(new JsonObject { ["state"] = "active", ["new-secret"] = "s1", ["keyslot"] = 1 })));

            // The luks driver: a second slot, then the first erased by its secret.
            Assert.Null(await AmendAsync(d, "k1", "l", new JsonObject { ["driver"] = "luks", ["state"] = "active", ["new-secret"] = "s1", ["keyslot"] = 3, ["iter-time"] = 10 }));
            Assert.Null(await AmendAsync(d, "k2", "l", new JsonObject { ["driver"] = "luks", ["state"] = "inactive", ["old-secret"] = "s0" }));
            Assert.Equal("No keyslots match given (old) password for erase operation",
                await AmendAsync(d, "k3", "l", new JsonObject { ["driver"] = "luks", ["state"] = "inactive", ["old-secret"] = "s0" }));

            var slots = ((JsonArray)await d.Qmp.ExecuteAsync("query-named-block-nodes")).OfType<JsonObject>()
                .Single(n => n["node-name"]!.GetValue<string>() == "q")["image"]!["format-specific"]!["data"]!["encrypt"]!["slots"]!.AsArray();
            Assert.Equal([true, true, false], slots.Take(3).Select(s => s!["active"]!.GetValue<bool>()));

            Assert.Equal("x-blockdev-amend doesn't support changing the block driver",
                (await d.Qmp.ErrorAsync("x-blockdev-amend", new JsonObject { ["job-id"] = "x", ["node-name"] = "q", ["options"] = new JsonObject { ["driver"] = "luks", ["state"] = "active" } })).Desc);
            Assert.Equal("Cannot find device='' nor node-name='nope'",
                (await d.Qmp.ErrorAsync("x-blockdev-amend", new JsonObject { ["job-id"] = "x", ["node-name"] = "nope", ["options"] = new JsonObject { ["driver"] = "luks", ["state"] = "active" } })).Desc);
            await d.Qmp.ExecuteAsync("quit");
            await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        }

        const string newSecret = "secret,id=s1,data=" + second;
        await ShAsync(dir, $"qemu-io --object '{newSecret}' --image-opts 'driver=qcow2,encrypt.key-secret=s1,file.filename=img' -c 'read -P 0 0 64K' >/dev/null");
        await ShAsync(dir, $"qemu-io --object '{SecretArg}' --image-opts '{Opts("img")}' -c 'read -P 0 0 64K' >/dev/null");
        await ShAsync(dir, $"qemu-io --object '{newSecret}' --image-opts 'driver=luks,key-secret=s1,file.filename=raw.luks' -c 'read 0 64K' >/dev/null");
        var old = await Tool.ShAsync($"cd '{dir.Path}' && qemu-io --object '{SecretArg}' --image-opts 'driver=luks,key-secret=s0,file.filename=raw.luks' -c 'read 0 512'");
        Assert.Contains("Invalid password, cannot unlock any keyslot", old.Stderr + old.Stdout, StringComparison.Ordinal);
        await AssertQemuCheckCleanAsync(dir, "img");
    }

    /// <summary>
    /// Legacy AES (qemu-img's encryption=on) reads as qemu-img convert reads it, opened read-only with a
    /// warning; writable exports and creating such images are refused.
    /// </summary>
    [Fact]
    public async Task LegacyAesIsReadOnly()
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"qemu-img create -q -f qcow2 --object '{SecretArg}' -o encryption=on,encrypt.key-secret=s0 img {Size}");
        await ShAsync(dir, $"qemu-io --object '{SecretArg}' --image-opts '{Opts("img")}' {string.Join(' ', Writes.Select(c => $"-c '{c}'"))} >/dev/null");
        await ConvertToRawAsync(dir, "img", "expected.raw");
        await using (var d = await ServeAsync(dir, dir["img"], writable: false, format: "aes"))
        {
            await AssertSameAsync(dir["expected.raw"], Uri(dir));
            Assert.Contains("legacy AES-CBC", d.Stderr, StringComparison.Ordinal);
        }

        var writable = Daemon.Launch(Daemon.ExportServerPath, ["--object", SecretArg,
            "--blockdev", $"driver=qcow2,node-name=n0,file.driver=file,file.filename={dir["img"]},encrypt.format=aes,encrypt.key-secret=s0",
            "--nbd-server", $"addr.type=unix,addr.path={dir["w.sock"]}", "--export", "type=nbd,id=e0,node-name=n0,writable=on"]);
        Assert.NotEqual(0, await writable.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("Cannot export read-only node as writable", writable.Stderr, StringComparison.Ordinal);
        await writable.DisposeAsync();

        var create = await Tool.RunAsync(Daemon.ExportServerPath, "create", "--object", SecretArg, "-f", "qcow2", "-o", "encryption=on,encrypt.key-secret=s0", dir["new.qcow2"], "1M");
        Assert.NotEqual(0, create.ExitCode);
        Assert.Contains("legacy AES encryption is not supported", create.Stderr, StringComparison.Ordinal);
    }
}
