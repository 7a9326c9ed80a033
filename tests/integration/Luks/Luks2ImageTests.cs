using System.Buffers.Binary;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Jobs;
using ExportServer.IntegrationTests.Support;
using Xunit;
using static ExportServer.IntegrationTests.Formats.ForeignImage;

namespace ExportServer.IntegrationTests.Luks;

/// <summary>
/// LUKS2 images formatted by cryptsetup on a plain file (QEMU reads LUKS1 only, so the data is
/// checked with an independent cipher: python3-cryptography with the volume key given to cryptsetup
/// at format time). What it encrypts we read, what we write it decrypts, the plaintext never
/// reaches the disk; wrong passphrases and damaged headers are refused while the daemon serves on.
/// </summary>
public sealed class Luks2ImageTests
{
    private const string Passphrase = "luks2 passphrase 7";
    private const string SecondPassphrase = "another one 8";
    private const string SecretArg = "secret,id=s0,data=" + Passphrase;

    /// <summary>cryptsetup puts the data 16 MiB into the file; the disk is what follows.</summary>
    private const long DataOffset = 16 << 20;

    private const long DiskSize = 32 << 20;

    /// <summary>Writes over the 32 MiB disk: sector-aligned and not, across 4 KiB sectors, zeroes, the last sector.</summary>
    private static readonly string[] Fill =
    [
        "write -P 0x11 0 1M", "write -P 0x22 3146240 100000", "write -z 512K 128K", "write -P 0x33 8M 256K",
        "write -P 0x44 20M 3M", "write -z 21M 4096", "write -P 0x55 33550336 4096",
    ];

    /// <summary>Later writes over the first: partial sectors at both ends, in place, zeroes.</summary>
    private static readonly string[] Rewrites =
    [
        "write -P 0x66 1000 5000", "write -P 0x77 22M 1M", "write -z 0 4096", "write -P 0x88 30M 64K", "write -P 0x99 12587000 9000",
    ];

    /// <summary>
    /// Encrypts (or decrypts) a whole disk image to (or from) the data segment as dm-crypt does: each
    /// sector with its IV, counted in 512-byte units from the segment start whatever the sector size.
    /// </summary>
    private const string CipherScript = """
        import sys, hashlib
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        op, image, keyfile, cipher, offset, sector, length, raw = sys.argv[1:9]
        offset, sector, length = int(offset), int(sector), int(length)
        key = open(keyfile, 'rb').read()

        def sector_cipher(index):
            iv = (index * sector // 512).to_bytes(16, 'little')
            if cipher == 'aes-xts-plain64':
                return Cipher(algorithms.AES(key), modes.XTS(iv))
            if cipher == 'aes-cbc-plain64':
                return Cipher(algorithms.AES(key), modes.CBC(iv))
            if cipher == 'aes-cbc-essiv:sha256':
                e = Cipher(algorithms.AES(hashlib.sha256(key).digest()), modes.ECB()).encryptor()
                return Cipher(algorithms.AES(key), modes.CBC(e.update(iv) + e.finalize()))
            raise SystemExit('unknown cipher ' + cipher)

        def run(data, encrypt):
            out = []
            for i in range(0, len(data), sector):
                c = sector_cipher(i // sector)
                x = c.encryptor() if encrypt else c.decryptor()
                out.append(x.update(data[i:i + sector]) + x.finalize())
            return b''.join(out)

        with open(image, 'r+b') as f:
            f.seek(offset)
            if op == 'encrypt':
                f.write(run(open(raw, 'rb').read(length), True))
            else:
                open(raw, 'wb').write(run(f.read(length), False))
        """;

    /// <summary>
    /// luksFormat --type luks2 of a 48 MiB file with <paramref name="options"/> and a volume key of
    /// <paramref name="keyBytes"/> random bytes kept in "vk" for the independent cipher.
    /// </summary>
    private static async Task FormatAsync(TempDir dir, string options, int keyBytes)
    {
        File.WriteAllBytes(dir["vk"], RandomNumberGenerator.GetBytes(keyBytes));
        File.WriteAllText(dir["luks2.py"], CipherScript);
        await ShAsync(dir, $"truncate -s {DataOffset + DiskSize} img && printf '%s' '{Passphrase}' | cryptsetup luksFormat --type luks2 --batch-mode "
            + $"--key-size {keyBytes * 8} --volume-key-file vk {options} --key-file - img");
    }

    private static Task CipherAsync(TempDir dir, string op, string cipher, int sectorSize, string raw, long length = DiskSize) =>
        ShAsync(dir, $"/usr/bin/python3 luks2.py {op} img vk '{cipher}' {DataOffset} {sectorSize} {length} {raw}");

    private static Task<Daemon> ServeAsync(TempDir dir, bool writable, string secret = Passphrase)
    {
        var ro = writable ? string.Empty : ",read-only=on";
        return Daemon.StartAsync(dir,
            "--object", $"secret,id=s0,data={secret}",
            "--blockdev", $"driver=file,node-name=f0,filename={dir["img"]}{ro}",
            "--blockdev", $"driver=luks,node-name=n0,file=f0,key-secret=s0{ro}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["nbd.sock"]}",
            "--export", $"type=nbd,id=e0,node-name=n0,name=disk,writable={(writable ? "on" : "off")}");
    }

    /// <summary>cryptsetup options (key derivation, cipher, sector size), the cipher's name, the volume key length and the sector size.</summary>
    public static TheoryData<string, string, int, int> Formats { get; } = new()
    {
        { "--pbkdf argon2id --pbkdf-memory 1024 --iter-time 50 --sector-size 4096", "aes-xts-plain64", 64, 4096 },
        { "--pbkdf argon2i --pbkdf-memory 256 --pbkdf-force-iterations 4 --sector-size 512", "aes-xts-plain64", 64, 512 },
        { "--pbkdf pbkdf2 --pbkdf-force-iterations 1000 --hash sha512 --sector-size 512", "aes-xts-plain64", 32, 512 },
        { "--pbkdf pbkdf2 --pbkdf-force-iterations 1000 --cipher aes-cbc-essiv:sha256 --sector-size 4096", "aes-cbc-essiv:sha256", 32, 4096 },
        { "--pbkdf argon2id --pbkdf-memory 64 --pbkdf-force-iterations 4 --pbkdf-parallel 1 --cipher aes-cbc-plain64 --sector-size 2048", "aes-cbc-plain64", 16, 2048 },
    };

    /// <summary>
    /// Data encrypted into the image by the independent cipher reads back equal through our export; our
    /// writes (aligned and not) decrypt to the same bytes in it; cryptsetup still unlocks the header.
    /// </summary>
    [Theory]
    [MemberData(nameof(Formats))]
    public async Task DataReadsAndWritesAsTheIndependentCipherSeesIt(string options, string cipher, int keyBytes, int sectorSize)
    {
        using var dir = new TempDir();
        await FormatAsync(dir, options, keyBytes);
        await ShAsync(dir, $"truncate -s {DiskSize} expected.raw");
        await ShAsync(dir, Io("raw", "expected.raw", Fill));
        await CipherAsync(dir, "encrypt", cipher, sectorSize, "expected.raw");
        await using (var d = await ServeAsync(dir, writable: true))
        {
            Assert.Equal(DiskSize, await ExportSizeAsync(Uri(dir)));
            await AssertSameAsync(dir["expected.raw"], Uri(dir));
            (await Tool.ShAsync(Io("raw", Uri(dir), Rewrites))).Check("writes over NBD");
            Assert.Equal(0, await d.StopAsync());
        }

        await ShAsync(dir, Io("raw", "expected.raw", Rewrites));
        await CipherAsync(dir, "decrypt", cipher, sectorSize, "back.raw");
        Assert.True(File.ReadAllBytes(dir["expected.raw"]).AsSpan().SequenceEqual(File.ReadAllBytes(dir["back.raw"])), "decrypted data differs");
        await ShAsync(dir, $"printf '%s' '{Passphrase}' | cryptsetup luksOpen --test-passphrase --key-file - img");
    }

    /// <summary>A written pattern is nowhere in the image file, and the independent cipher finds it where it was written.</summary>
    [Fact]
    public async Task WrittenPlaintextIsNotOnDisk()
    {
        using var dir = new TempDir();
        await FormatAsync(dir, "--pbkdf argon2id --pbkdf-memory 512 --pbkdf-force-iterations 4", 64);
        var marker = "LUKS2-PLAINTEXT-MARKER-0123456789"u8.ToArray();
        var data = Enumerable.Repeat(marker, (256 << 10) / marker.Length + 1).SelectMany(b => b).Take(256 << 10).ToArray();
        File.WriteAllBytes(dir["data"], data);
        await using (var d = await ServeAsync(dir, writable: true))
        {
            (await Tool.ShAsync($"/usr/bin/python3 -c \"import nbd; h=nbd.NBD(); h.connect_uri('{Uri(dir)}'); h.pwrite(open('{dir["data"]}','rb').read(), 5<<20); h.flush(); h.shutdown()\"")).Check("write");
            Assert.Equal(0, await d.StopAsync());
        }

        Assert.Equal(-1, File.ReadAllBytes(dir["img"]).AsSpan().IndexOf(marker));
        await CipherAsync(dir, "decrypt", "aes-xts-plain64", 4096, "back.raw");
        Assert.Equal(data, File.ReadAllBytes(dir["back.raw"]).AsSpan(5 << 20, data.Length).ToArray());
    }

    /// <summary>
    /// A wrong passphrase is refused in QEMU's words, on the command line naming the node's option and over
    /// QMP, and never echoed; a second key slot (pbkdf2 beside argon2id) opens the image; the node reports the
    /// segment's cipher.
    /// </summary>
    [Fact]
    public async Task WrongPassphraseIsRefusedAndEveryKeyslotOpens()
    {
        using var dir = new TempDir();
        await FormatAsync(dir, "--pbkdf argon2id --pbkdf-memory 1024 --pbkdf-force-iterations 4", 64);
        File.WriteAllText(dir["k1"], Passphrase);
        File.WriteAllText(dir["k2"], SecondPassphrase);
        await ShAsync(dir, "cryptsetup luksAddKey --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file k1 img k2");
        const string wrong = "not-the-luks2-passphrase";
        var start = Daemon.Launch(Daemon.ExportServerPath, ["--object", $"secret,id=s0,data={wrong}",
            "--blockdev", $"driver=file,node-name=f0,filename={dir["img"]}", "--blockdev", "driver=luks,node-name=n0,file=f0,key-secret=s0"]);
        Assert.NotEqual(0, await start.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("driver=luks,node-name=n0,file=f0,key-secret=s0: Invalid password, cannot unlock any keyslot", start.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain(wrong, start.Stderr + start.Stdout, StringComparison.Ordinal);
        await start.DisposeAsync();

        await using var d = await JobDaemon.StartAsync(dir, "a", false,
            "--object", $"secret,id=bad,data={wrong}", "--object", SecretArg, "--object", $"secret,id=s1,data={SecondPassphrase}");
        await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "p", ["filename"] = dir["img"] });
        var (cls, desc) = await d.Qmp.ErrorAsync("blockdev-add", new JsonObject { ["driver"] = "luks", ["node-name"] = "l", ["file"] = "p", ["key-secret"] = "bad" });
        Assert.Equal(("GenericError", "Invalid password, cannot unlock any keyslot"), (cls, desc));

        foreach (var (node, secret) in new[] { ("l0", "s0"), ("l1", "s1") })
        {
            await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject
            {
                ["driver"] = "luks", ["node-name"] = node, ["file"] = "p", ["key-secret"] = secret, ["read-only"] = true,
            });
        }

        var nodes = (JsonArray)(await d.Qmp.ExecuteAsync("query-named-block-nodes"))!;
        var info = nodes.Single(n => n!["node-name"]!.GetValue<string>() == "l1")!["image"]!["format-specific"]!;
        Assert.Equal("luks", info["type"]!.GetValue<string>());
        Assert.Equal("aes-256", info["data"]!["cipher-alg"]!.GetValue<string>());
        Assert.Equal("xts", info["data"]!["cipher-mode"]!.GetValue<string>());
        Assert.Equal(DataOffset, info["data"]!["payload-offset"]!.GetValue<long>());
        Assert.Equal(2, info["data"]!["slots"]!.AsArray().Count);
        var text = nodes.ToJsonString();
        Assert.DoesNotContain(wrong, text, StringComparison.Ordinal);
        Assert.DoesNotContain(Passphrase, text, StringComparison.Ordinal);
        Assert.DoesNotContain(SecondPassphrase, text, StringComparison.Ordinal);
    }

    /// <summary>
    /// QEMU probes LUKS1 only, and so do we: `serve` of a LUKS2 image without a format finds raw (and
    /// serves the whole file read-only with its warning), while a LUKS1 image is found to be luks.
    /// </summary>
    [Fact]
    public async Task Luks2IsNotProbed()
    {
        using var dir = new TempDir();
        await FormatAsync(dir, "--pbkdf pbkdf2 --pbkdf-force-iterations 1000", 64);
        var probed = (await Tool.RunAsync("qemu-img", "info", "-U", "--output=json", dir["img"])).Check("qemu-img info").Stdout;
        Assert.Equal("raw", JsonNode.Parse(probed)!["format"]!.GetValue<string>());
        await using (var d = await Daemon.StartAsync(dir, "serve", dir["img"], "--socket", dir["nbd.sock"], "--name", "disk"))
        {
            Assert.Equal(DataOffset + DiskSize, await ExportSizeAsync(Uri(dir)));
            Assert.Contains("probing guessed raw", d.Stderr, StringComparison.Ordinal);
        }

        await ShAsync(dir, $"truncate -s 4M luks1 && printf '%s' '{Passphrase}' | cryptsetup luksFormat --type luks1 --batch-mode --pbkdf-force-iterations 1000 --key-file - luks1");
        var luks1 = Daemon.Launch(Daemon.ExportServerPath, ["serve", dir["luks1"], "--socket", dir["luks1.sock"]]);
        Assert.NotEqual(0, await luks1.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("driver=luks", luks1.Stderr, StringComparison.Ordinal);
        await luks1.DisposeAsync();
    }

    /// <summary>
    /// block_resize grows a dynamic segment (whole 4096-byte sectors only); data written past the old end
    /// decrypts in the independent cipher, and cryptsetup still unlocks the grown file.
    /// </summary>
    [Fact]
    public async Task ResizeGrowsTheDynamicSegment()
    {
        using var dir = new TempDir();
        await FormatAsync(dir, "--pbkdf pbkdf2 --pbkdf-force-iterations 1000 --sector-size 4096", 64);
        const long grown = 40 << 20;
        await using (var d = await JobDaemon.StartAsync(dir, "a", false, "--object", SecretArg))
        {
            await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject
            {
                ["driver"] = "luks", ["node-name"] = "l", ["key-secret"] = "s0",
                ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = dir["img"] },
            });
            Assert.Equal("The new size must be a multiple of 4096",
                (await d.Qmp.ErrorAsync("block_resize", new JsonObject { ["node-name"] = "l", ["size"] = grown + 512 })).Desc);
            await d.Qmp.ExecuteAsync("block_resize", new JsonObject { ["node-name"] = "l", ["size"] = grown });
            await d.ExportAsync("l");
            Assert.Equal(grown, await ExportSizeAsync(d.NbdUri("l")));
            (await Tool.ShAsync(Io("raw", d.NbdUri("l"), ["write -P 0x5e 39M 1M"]))).Check("write past the old end");
            await d.Qmp.ExecuteAsync("quit");
            await d.Process.WaitForExitAsync(TimeSpan.FromSeconds(10));
        }

        Assert.Equal(DataOffset + grown, new FileInfo(dir["img"]).Length);
        await CipherAsync(dir, "decrypt", "aes-xts-plain64", 4096, "back.raw", grown);
        Assert.True(File.ReadAllBytes(dir["back.raw"]).AsSpan(39 << 20, 1 << 20).IndexOfAnyExcept((byte)0x5e) < 0, "the written pattern does not decrypt");
        await ShAsync(dir, $"printf '%s' '{Passphrase}' | cryptsetup luksOpen --test-passphrase --key-file - img");
    }

    /// <summary>A damaged primary header is passed over for the secondary (the data still reads); the file's headers are left as they were.</summary>
    [Fact]
    public async Task DamagedPrimaryHeaderFallsBackToTheSecondary()
    {
        using var dir = new TempDir();
        await FormatAsync(dir, "--pbkdf pbkdf2 --pbkdf-force-iterations 1000 --sector-size 4096", 64);
        await ShAsync(dir, $"truncate -s {DiskSize} expected.raw");
        await ShAsync(dir, Io("raw", "expected.raw", Fill));
        await CipherAsync(dir, "encrypt", "aes-xts-plain64", 4096, "expected.raw");
        Poke(dir["img"], 4096 + 10, "XX"u8);
        var before = File.ReadAllBytes(dir["img"]).AsSpan(0, (int)DataOffset).ToArray();
        await using (var d = await ServeAsync(dir, writable: true))
        {
            await AssertSameAsync(dir["expected.raw"], Uri(dir));
            Assert.Equal(0, await d.StopAsync());
        }

        Assert.True(before.AsSpan().SequenceEqual(File.ReadAllBytes(dir["img"]).AsSpan(0, (int)DataOffset)), "the metadata changed");
    }

    /// <summary>
    /// Damaged headers, each with valid checksums (rewritten after the change) unless the damage is the
    /// checksum: refused with an error naming what is wrong, quickly and in bounded memory, and the daemon
    /// serves on. Each change is made to both headers.
    /// </summary>
    [Theory]
    [InlineData("checksum", "", "", "luks: no valid LUKS2 header: checksum mismatch (both headers)")]
    [InlineData("json", "{\"keyslots\"", "[\"keyslots\"", "luks: no valid LUKS2 header: LUKS2 metadata: JSON syntax error")]
    [InlineData("json", "\"config\":{", "\"config\":{\"requirements\":{\"mandatory\":[\"online-reencrypt-v2\"]},", "luks: LUKS2 requirement 'online-reencrypt-v2' is not supported")]
    [InlineData("json", "\"json_size\":\"12288\"", "\"json_size\":\"4096\"", "metadata.config.json_size 4096 does not match the header size 16384 (both headers)")]
    [InlineData("json", "\"offset\":\"32768\"", "\"offset\":\"99999999999\"", "metadata.keyslots.0.area [0x174876e7ff, +0x3f000) lies outside the key slots area")]
    [InlineData("json", "\"offset\":\"16777216\"", "\"offset\":\"1677721600000\"", "metadata.segments.0 at offset 0x186a0000000 overlaps the metadata (up to 0x1000000) or lies beyond the end of the file")]
    [InlineData("json", "\"memory\":1024", "\"memory\":4000000000", "metadata.keyslots.0.kdf.memory 4000000000 is out of range (8 to 4194304)")]
    [InlineData("json", "\"time\":4", "\"time\":4000000000", "metadata.keyslots.0.kdf time cost 4000000000 with memory 1024 KiB exceeds the work limit")]
    [InlineData("json", "\"stripes\":4000", "\"stripes\":40000000", "metadata.keyslots.0.af.stripes 40000000 is out of range (4000 to 4000)")]
    [InlineData("json", "\"key_size\":64,\"af\"", "\"key_size\":1000000,\"af\"", "metadata.keyslots.0.key_size 1000000 is out of range (1 to 512)")]
    [InlineData("json", "\"type\":\"argon2id\"", "\"type\":\"scrypt\"", "metadata.keyslots.0.kdf.type 'scrypt' is not pbkdf2, argon2i or argon2id")]
    [InlineData("json", "\"encryption\":\"aes-xts-plain64\",\"sector_size\"", "\"encryption\":\"serpent-xts-plain64\",\"sector_size\"", "luks: LUKS2 segment 0: Unsupported cipher name 'serpent'")]
    [InlineData("json", "\"sector_size\":4096", "\"sector_size\":3000", "metadata.segments.0.sector_size 3000 is not a power of two")]
    [InlineData("size", "", "", "header size 0x40000000 is not a power of two from 16 KiB to 4 MiB (both headers)")]
    [InlineData("digest", "", "", "Invalid password, cannot unlock any keyslot")]
    public async Task DamagedHeadersAreRefused(string damage, string find, string replace, string message)
    {
        using var dir = new TempDir();
        await FormatAsync(dir, "--pbkdf argon2id --pbkdf-memory 1024 --pbkdf-force-iterations 4 --sector-size 4096", 64);
        var path = dir["img"];
        switch (damage)
        {
            case "checksum":
                Poke(path, 4096 + 10, "XX"u8);
                Poke(path, (16 << 10) + 4096 + 10, "XX"u8);
                break;
            case "size":
                foreach (var at in new[] { 0L, 16 << 10 })
                {
                    Poke(path, at + 8, [0, 0, 0, 0, 0x40, 0, 0, 0]);
                }

                break;
            case "digest":
                // The stored digest no longer matches any key: every passphrase is wrong.
                EditJson(path, json =>
                {
                    var at = json.IndexOf("\"digest\":\"", StringComparison.Ordinal) + 10;
                    return json[..at] + (json[at] == 'A' ? 'B' : 'A') + json[(at + 1)..];
                });
                break;
            default:
                EditJson(path, json =>
                {
                    Assert.Contains(find, json, StringComparison.Ordinal);
                    return json.Replace(find, replace, StringComparison.Ordinal);
                });
                break;
        }

        await using var d = await JobDaemon.StartAsync(dir, "a", false, "--object", SecretArg);
        await d.Qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = "p", ["filename"] = path });
        var watch = Stopwatch.StartNew();
        var (_, desc) = await d.Qmp.ErrorAsync("blockdev-add", new JsonObject { ["driver"] = "luks", ["node-name"] = "l", ["file"] = "p", ["key-secret"] = "s0" });
        Assert.Contains(message, desc, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"refusal took {watch.Elapsed}");
        Assert.NotNull(await d.Qmp.ExecuteAsync("query-named-block-nodes"));
    }

    private static void Poke(string path, long offset, ReadOnlySpan<byte> bytes)
    {
        using var f = File.OpenWrite(path);
        f.Position = offset;
        f.Write(bytes);
    }

    /// <summary>
    /// Rewrites the JSON text of both headers (primary at 0, secondary after it) and their SHA-256
    /// checksums: the hash of the header area with the 64-byte checksum field at 448 zeroed.
    /// </summary>
    private static void EditJson(string path, Func<string, string> edit)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        var head = new byte[4096];
        f.ReadExactly(head);
        var size = (int)BinaryPrimitives.ReadUInt64BigEndian(head.AsSpan(8));
        foreach (var at in new long[] { 0, size })
        {
            var area = new byte[size];
            f.Position = at;
            f.ReadExactly(area);
            var json = area.AsSpan(4096);
            var text = Encoding.ASCII.GetString(json[..json.IndexOf((byte)0)]);
            var changed = Encoding.ASCII.GetBytes(edit(text));
            json.Clear();
            changed.CopyTo(json);
            area.AsSpan(448, 64).Clear();
            SHA256.HashData(area).CopyTo(area, 448);
            f.Position = at;
            f.Write(area);
        }
    }
}
