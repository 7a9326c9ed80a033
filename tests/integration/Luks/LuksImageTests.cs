using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Jobs;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Formats.ForeignImage;

namespace ExportServer.IntegrationTests.Luks;

/// <summary>
/// LUKS images against qemu-img and qemu-io with the same secret: what QEMU writes we read as it
/// does, what we write QEMU decrypts, what we create QEMU opens; a wrong passphrase is refused in
/// QEMU's words and never shows up anywhere.
/// </summary>
public sealed class LuksImageTests
{
    private const string Passphrase = "correct horse 42";
    private const string SecretArg = "secret,id=s0,data=" + Passphrase;

    /// <summary>QEMU's --image-opts for a LUKS file unlocked with secret s0.</summary>
    private static string Opts(string file) => $"driver=luks,key-secret=s0,file.filename={file}";

    private static string QemuIo(string file, IEnumerable<string> commands) =>
        $"qemu-io --object '{SecretArg}' --image-opts '{Opts(file)}' {string.Join(' ', commands.Select(c => $"-c '{c}'"))} >/dev/null";

    /// <summary>
    /// qemu-img create with a short PBKDF time. qemu-img times PBKDF2 by the process's CPU time and gives
    /// up ("Unable to get accurate CPU usage") when its first round measures 0 ms, so that one case is retried.
    /// </summary>
    private static async Task CreateWithQemuAsync(TempDir dir, string name, string options)
    {
        await RunLuksCreateAsync($"cd '{dir.Path}' && qemu-img create -q -f luks --object '{SecretArg}' -o key-secret=s0,iter-time=10{(options.Length > 0 ? "," + options : string.Empty)} {name} {Size}");
    }

    /// <summary>Runs a `qemu-img create -f luks` shell command, retrying only qemu-img's PBKDF timing failure.</summary>
    internal static async Task RunLuksCreateAsync(string command)
    {
        for (var attempt = 1; ; attempt++)
        {
            var r = await Tool.ShAsync(command);
            if (r.ExitCode == 0 || attempt == 30 || !r.Stderr.Contains("Unable to get accurate CPU usage", StringComparison.Ordinal))
            {
                r.Check(command);
                return;
            }

            // qemu-img's thread CPU clock moves in scheduler ticks: a short first PBKDF round can
            // measure 0 ms several times in a row. Start the next attempt at another point of the tick.
            await Task.Delay(37 * attempt);
        }
    }

    private static async Task ConvertToRawAsync(TempDir dir, string image, string raw) =>
        await ShAsync(dir, $"qemu-img convert --object '{SecretArg}' --image-opts '{Opts(image)}' -O raw {raw}");

    private static Task<Daemon> ServeLuksAsync(TempDir dir, string image, bool writable, string secret = Passphrase)
    {
        var ro = writable ? string.Empty : ",read-only=on";
        return Daemon.StartAsync(dir,
            "--object", $"secret,id=s0,data={secret}",
            "--blockdev", $"driver=file,node-name=f0,filename={image}{ro}",
            "--blockdev", $"driver=luks,node-name=n0,file=f0,key-secret=s0{ro}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}",
            "--export", $"type=nbd,id=e0,node-name=n0,name=disk,writable={(writable ? "on" : "off")}");
    }

    public static TheoryData<string> Ciphers { get; } =
    [
        string.Empty,
        "cipher-alg=aes-128",
        "cipher-alg=aes-192,hash-alg=sha1",
        "cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha256",
        "cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=plain64,hash-alg=sha512",
        "cipher-alg=aes-192,cipher-mode=xts,ivgen-alg=plain",
        "cipher-mode=xts,ivgen-alg=essiv,ivgen-hash-alg=sha256",
        "cipher-mode=ecb",
    ];

    [Theory]
    [MemberData(nameof(Ciphers))]
    public async Task QemuImagesReadAsQemuImgConvertReadsThem(string options)
    {
        using var dir = new TempDir();
        await CreateWithQemuAsync(dir, "img", options);
        await ShAsync(dir, QemuIo("img", Writes));
        await ConvertToRawAsync(dir, "img", "expected.raw");
        await using var d = await ServeLuksAsync(dir, dir["img"], writable: false);
        Assert.Equal(64L << 20, await ExportSizeAsync(Uri(dir)));
        await AssertSameAsync(dir["expected.raw"], Uri(dir));
    }

    [Theory]
    [MemberData(nameof(Ciphers))]
    public async Task OurWritesDecryptInQemu(string options)
    {
        using var dir = new TempDir();
        await CreateWithQemuAsync(dir, "img", options);
        await ConvertToRawAsync(dir, "img", "expected.raw");
        await ShAsync(dir, Io("raw", "expected.raw", [.. Writes, .. Overwrites]));
        foreach (var commands in new[] { Writes, Overwrites })
        {
            await using var d = await ServeLuksAsync(dir, dir["img"], writable: true);
            (await Tool.ShAsync(Io("raw", Uri(dir), commands))).Check("writes over NBD");
            Assert.Equal(0, await d.StopAsync());
        }

        await ShAsync(dir, $"qemu-img compare --object '{SecretArg}' --image-opts 'driver=raw,file.filename=expected.raw' '{Opts("img")}'");
    }

    /// <summary>The plaintext never reaches the disk: a written pattern is nowhere in the image file.</summary>
    [Fact]
    public async Task WrittenPlaintextIsNotOnDisk()
    {
        using var dir = new TempDir();
        await CreateWithQemuAsync(dir, "img", string.Empty);
        var marker = "PLAINTEXT-MARKER-0123456789"u8.ToArray();
        var data = Enumerable.Repeat(marker, (64 << 10) / marker.Length + 1).SelectMany(b => b).Take(64 << 10).ToArray();
        File.WriteAllBytes(dir["data"], data);
        await using (var d = await ServeLuksAsync(dir, dir["img"], writable: true))
        {
            (await Tool.ShAsync($"/usr/bin/python3 -c \"import nbd; h=nbd.NBD(); h.connect_uri('{Uri(dir)}'); h.pwrite(open('{dir["data"]}','rb').read(), 1<<20); h.flush(); h.shutdown()\"")).Check("write");
            Assert.Equal(0, await d.StopAsync());
        }

        var image = File.ReadAllBytes(dir["img"]);
        Assert.Equal(-1, image.AsSpan().IndexOf(marker));
        await ShAsync(dir, $"qemu-img convert --object '{SecretArg}' --image-opts '{Opts("img")}' -O raw back.raw");
        Assert.Equal(data, File.ReadAllBytes(dir["back.raw"]).AsSpan(1 << 20, data.Length).ToArray());
    }

    /// <summary>Options and the payload offset QEMU gives them: 4 KiB of header, then eight slots of key × 4000 bytes each rounded up to 4 KiB.</summary>
    public static TheoryData<string, long> CreateOptions { get; } = new()
    {
        { "{}", 2068480 },
        { """{"cipher-alg": "aes-128", "hash-alg": "sha1"}""", 1052672 },
        { """{"cipher-alg": "aes-256", "cipher-mode": "cbc", "ivgen-alg": "essiv", "ivgen-hash-alg": "sha256", "hash-alg": "sha512"}""", 1052672 },
        { """{"cipher-alg": "aes-192", "cipher-mode": "xts", "ivgen-alg": "plain64"}""", 1544192 },
        { """{"preallocation": "full"}""", 2068480 },
    };

    /// <summary>blockdev-create makes an image with QEMU's layout that qemu-img opens with the passphrase and reads our data from.</summary>
    [Theory]
    [MemberData(nameof(CreateOptions))]
    public async Task BlockdevCreateMakesImagesQemuOpens(string extra, long payloadOffset)
    {
        using var dir = new TempDir();
        var path = dir["img"];
        await using (var d = await JobDaemon.StartAsync(dir, "a", false, "--object", SecretArg))
        {
            Assert.Null(await d.BlockdevCreateAsync("c0", new JsonObject { ["driver"] = "file", ["filename"] = path, ["size"] = 0 }));
            await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "p", ["filename"] = path });
            var options = (JsonObject)JsonNode.Parse(extra)!;
            options["driver"] = "luks";
            options["file"] = "p";
            options["size"] = 32 << 20;
            options["key-secret"] = "s0";
            options["iter-time"] = 10;
            Assert.Null(await d.BlockdevCreateAsync("c1", options));
            await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "luks", ["node-name"] = "l", ["file"] = "p", ["key-secret"] = "s0" });
            await d.ExportAsync("l");
            (await Tool.ShAsync(Io("raw", d.NbdUri("l"), ["write -P 0x3c 2M 1M", "write -P 0x4d 31M 1M"]))).Check("write");
            await d.Qmp.ExecuteAsync("quit");
            await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        }

        var info = (await Tool.ShAsync($"qemu-img info --output=json --object '{SecretArg}' --image-opts '{Opts(path)}'")).Check("info").Stdout;
        var json = JsonNode.Parse(info)!;
        Assert.Equal(32L << 20, json["virtual-size"]!.GetValue<long>());
        Assert.Equal(payloadOffset, json["format-specific"]!["data"]!["payload-offset"]!.GetValue<long>());
        Assert.Equal(payloadOffset + (32 << 20), new FileInfo(path).Length);
        (await Tool.ShAsync(QemuIo(path, ["read -P 0x3c 2M 1M", "read -P 0x4d 31M 1M"]))).Check("read back in qemu-io");
    }

    /// <summary>The payload offset qemu-img gives the same options matches the table above (the layout is QEMU's, not ours alone).</summary>
    [Theory]
    [InlineData("", 2068480)]
    [InlineData("cipher-alg=aes-128", 1052672)]
    [InlineData("cipher-alg=aes-192,cipher-mode=xts,ivgen-alg=plain64", 1544192)]
    public async Task QemuLaysOutPayloadAsWeDo(string options, long payloadOffset)
    {
        using var dir = new TempDir();
        await CreateWithQemuAsync(dir, "img", options);
        Assert.Equal(payloadOffset + (64 << 20), new FileInfo(dir["img"]).Length);
    }

    [Fact]
    public async Task WrongPassphraseIsRefusedInQemusWordsAndNeverEchoed()
    {
        using var dir = new TempDir();
        await CreateWithQemuAsync(dir, "img", string.Empty);
        const string wrong = "not-the-passphrase-xyzzy";
        var start = Daemon.Launch(Daemon.ExportServerPath, ["--object", $"secret,id=s0,data={wrong}",
            "--blockdev", $"driver=file,node-name=f0,filename={dir["img"]}", "--blockdev", "driver=luks,node-name=n0,file=f0,key-secret=s0"]);
        Assert.NotEqual(0, await start.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("Invalid password, cannot unlock any keyslot", start.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain(wrong, start.Stderr + start.Stdout, StringComparison.Ordinal);
        await start.DisposeAsync();

        await using var d = await JobDaemon.StartAsync(dir, "a", false, "--object", $"secret,id=bad,data={wrong}", "--object", SecretArg);
        await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "p", ["filename"] = dir["img"] });
        var (cls, desc) = await d.Qmp.ErrorAsync("blockdev-add", new JsonObject { ["driver"] = "luks", ["node-name"] = "l", ["file"] = "p", ["key-secret"] = "bad" });
        Assert.Equal(("GenericError", "Invalid password, cannot unlock any keyslot"), (cls, desc));
        Assert.Equal("Parameter 'key-secret' is required for cipher",
            (await d.Qmp.ErrorAsync("blockdev-add", new JsonObject { ["driver"] = "luks", ["node-name"] = "l", ["file"] = "p" })).Desc);
        Assert.Equal("No secret with id 'nope'",
            (await d.Qmp.ErrorAsync("blockdev-add", new JsonObject { ["driver"] = "luks", ["node-name"] = "l", ["file"] = "p", ["key-secret"] = "nope" })).Desc);

        // Still serving: the right secret opens the same image.
        await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "luks", ["node-name"] = "l", ["file"] = "p", ["key-secret"] = "s0" });
        var nodes = (await d.Qmp.ExecuteAsync("query-named-block-nodes")).ToJsonString();
        Assert.DoesNotContain(wrong, nodes, StringComparison.Ordinal);
        Assert.DoesNotContain(Passphrase, nodes, StringComparison.Ordinal);
        Assert.DoesNotContain(wrong, d.Process.Stderr + d.Process.Stdout, StringComparison.Ordinal);
    }

    /// <summary>Damaged headers and key material are refused with an error and the daemon stays up; none hangs.</summary>
    [Theory]
    [InlineData(6, new byte[] { 0, 9 }, "LUKS version 9 is not supported")]
    [InlineData(108, new byte[] { 0, 0, 0, 0 }, "luks: master key length 0 is not a valid key size")]
    [InlineData(208, new byte[] { 1, 2, 3, 4 }, "Keyslot 0 state (active/disable) is corrupted")]
    [InlineData(248, new byte[] { 0x7f, 0xff, 0xff, 0xff }, "Keyslot 0 is overlapping with the encrypted payload or beyond the end of the file")]
    [InlineData(252, new byte[] { 0, 0, 0, 1 }, "Keyslot 0 is corrupted (stripes 1 != 4000)")]
    [InlineData(40, new byte[] { (byte)'g', (byte)'c', (byte)'m', 0 }, "Cipher mode 'gcm' is not supported")]
    [InlineData(8, new byte[] { (byte)'s', (byte)'e', (byte)'r', (byte)'p', (byte)'e', (byte)'n', (byte)'t', 0 }, "Unsupported cipher name 'serpent'")]
    [InlineData(72, new byte[] { (byte)'m', (byte)'d', (byte)'5', 0 }, "Hash algorithm 'md5' not supported")]
    [InlineData(4096, new byte[] { 0xde, 0xad, 0xbe, 0xef }, "Invalid password, cannot unlock any keyslot")]
    [InlineData(112, new byte[] { 0xde, 0xad, 0xbe, 0xef }, "Invalid password, cannot unlock any keyslot")]
    public async Task CorruptHeadersAreRefused(int offset, byte[] bytes, string message)
    {
        using var dir = new TempDir();
        await CreateWithQemuAsync(dir, "img", string.Empty);
        using (var f = File.OpenWrite(dir["img"]))
        {
            f.Position = offset;
            f.Write(bytes);
        }

        await using var d = await JobDaemon.StartAsync(dir, "a", false, "--object", SecretArg);
        await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "p", ["filename"] = dir["img"] });
        var (_, desc) = await d.Qmp.ErrorAsync("blockdev-add", new JsonObject { ["driver"] = "luks", ["node-name"] = "l", ["file"] = "p", ["key-secret"] = "s0" });
        Assert.Equal(message, desc);
        Assert.NotNull(await d.Qmp.ExecuteAsync("query-named-block-nodes"));
    }

    /// <summary>block_resize grows the payload; data written before stays, and QEMU sees the new size.</summary>
    [Fact]
    public async Task ResizeGrowsThePayload()
    {
        using var dir = new TempDir();
        await CreateWithQemuAsync(dir, "img", string.Empty);
        await ShAsync(dir, QemuIo("img", ["write -P 0x61 63M 1M"]));
        await using (var d = await JobDaemon.StartAsync(dir, "a", false, "--object", SecretArg))
        {
            await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject
            {
                ["driver"] = "luks", ["node-name"] = "l", ["key-secret"] = "s0",
                ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = dir["img"] },
            });
            await d.Qmp.ExecuteAsync("block_resize", new JsonObject { ["node-name"] = "l", ["size"] = 96 << 20 });
            await d.ExportAsync("l");
            (await Tool.ShAsync(Io("raw", d.NbdUri("l"), ["write -P 0x62 95M 1M"]))).Check("write");
            await d.Qmp.ExecuteAsync("quit");
            await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        }

        var info = JsonNode.Parse((await Tool.ShAsync($"qemu-img info --output=json --object '{SecretArg}' --image-opts '{Opts(dir["img"])}'")).Check("info").Stdout)!;
        Assert.Equal(96L << 20, info["virtual-size"]!.GetValue<long>());
        (await Tool.ShAsync(QemuIo(dir["img"], ["read -P 0x61 63M 1M", "read -P 0x62 95M 1M"]))).Check("read back");
    }

    /// <summary>LUKS1 images formatted by cryptsetup (a plain file, no device mapper), filled by QEMU, read as QEMU reads them and written back.</summary>
    [Theory]
    [InlineData("--cipher aes-xts-plain64 --key-size 512 --hash sha256")]
    [InlineData("--cipher aes-xts-plain64 --key-size 256 --hash sha1")]
    [InlineData("--cipher aes-cbc-essiv:sha256 --key-size 256 --hash sha512")]
    [InlineData("--cipher aes-cbc-plain64 --key-size 128 --hash sha256")]
    public async Task CryptsetupLuks1ImagesReadAndWriteAsQemuDoes(string options)
    {
        using var dir = new TempDir();
        await ShAsync(dir, $"truncate -s {Size} img && printf '%s' '{Passphrase}' | cryptsetup luksFormat --type luks1 --batch-mode --pbkdf-force-iterations 1000 {options} --key-file - img");
        // cryptsetup's payload starts 1 or 2 MiB into the file, so the disk is smaller than the file: the last write moves inside it.
        await ShAsync(dir, QemuIo("img", [.. Writes[..^1], "write -P 0x55 60M 8192"]));
        await ConvertToRawAsync(dir, "img", "expected.raw");
        await using (var d = await ServeLuksAsync(dir, dir["img"], writable: true))
        {
            await AssertSameAsync(dir["expected.raw"], Uri(dir));
            (await Tool.ShAsync(Io("raw", Uri(dir), Overwrites))).Check("writes over NBD");
            Assert.Equal(0, await d.StopAsync());
        }

        await ShAsync(dir, Io("raw", "expected.raw", Overwrites));
        await ShAsync(dir, $"qemu-img compare --object '{SecretArg}' --image-opts 'driver=raw,file.filename=expected.raw' '{Opts("img")}'");
        await ShAsync(dir, $"printf '%s' '{Passphrase}' | cryptsetup luksOpen --test-passphrase --key-file - img");
    }

    /// <summary>What we create cryptsetup unlocks with the same passphrase, and its dump shows QEMU's layout.</summary>
    [Fact]
    public async Task CryptsetupOpensImagesWeCreate()
    {
        using var dir = new TempDir();
        var path = dir["img"];
        await using (var d = await JobDaemon.StartAsync(dir, "a", false, "--object", SecretArg))
        {
            Assert.Null(await d.BlockdevCreateAsync("c0", new JsonObject { ["driver"] = "file", ["filename"] = path, ["size"] = 0 }));
            await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "p", ["filename"] = path });
            Assert.Null(await d.BlockdevCreateAsync("c1", new JsonObject
            {
                ["driver"] = "luks", ["file"] = "p", ["size"] = 16 << 20, ["key-secret"] = "s0", ["iter-time"] = 10,
                ["cipher-mode"] = "cbc", ["ivgen-alg"] = "essiv", ["hash-alg"] = "sha1",
            }));
        }

        await ShAsync(dir, $"printf '%s' '{Passphrase}' | cryptsetup luksOpen --test-passphrase --key-file - img");
        var dump = (await Tool.ShAsync($"cryptsetup luksDump {path}")).Check("luksDump").Stdout;
        Assert.Contains("cbc-essiv:sha256", dump, StringComparison.Ordinal);
        Assert.Matches(@"Payload offset:\s+2056", dump);
        var wrong = await Tool.ShAsync($"printf 'nope' | cryptsetup luksOpen --test-passphrase --key-file - {path}");
        Assert.NotEqual(0, wrong.ExitCode);
    }
}
