using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Qmp;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Ssh;

/// <summary>
/// driver=ssh against a real OpenSSH server: our daemon reaches the file over SFTP, authenticated by
/// the ssh-agent, and serves it over NBD. The daemon gets SSH_AUTH_SOCK through env(1).
/// </summary>
public sealed class SshDriverTests
{
    private static Task<Daemon> StartAsync(TempDir dir, SshServer ssh, params string[] args) =>
        Daemon.StartAsync("/usr/bin/env", dir, [$"SSH_AUTH_SOCK={ssh.AgentSocket}", Daemon.ExportServerPath, .. args]);

    [Fact]
    public async Task ReadsEqualTheRemoteFileAndWritesReachIt()
    {
        using var dir = new TempDir();
        await using var ssh = await SshServer.StartAsync(dir);
        var remote = dir["remote.raw"];
        (await Tool.ShAsync($"head -c 9M /dev/urandom > {remote}")).Check("fill");
        var copy = dir["copy.raw"];
        File.Copy(remote, copy);
        var sock = dir["nbd.sock"];
        await using (var d = await StartAsync(dir, ssh,
            "--blockdev", ssh.NodeOptions(remote).Replace("driver=ssh,", "driver=ssh,node-name=s0,", StringComparison.Ordinal),
            "--nbd-server", $"addr.type=unix,addr.path={sock}",
            "--export", "type=nbd,id=e0,node-name=s0,name=disk,writable=on"))
        {
            var uri = $"nbd+unix:///disk?socket={sock}";
            (await Tool.RunAsync("qemu-img", "compare", "-U", "-f", "raw", "-F", "raw", uri, copy)).Check("compare");

            // Unaligned, large and concurrent writes (nbdcopy keeps several requests in flight).
            (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5a 1000 70000", "-c", "write -P 0x3c 5M 2M", "-c", "flush", uri)).Check("write");
            (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5a 1000 70000", "-c", "write -P 0x3c 5M 2M", copy)).Check("same writes on the copy");
            (await Tool.RunAsync("qemu-img", "compare", "-U", "-f", "raw", "-F", "raw", uri, copy)).Check("compare after writes");
            var back = dir["back.raw"];
            (await Tool.RunAsync("nbdcopy", "--requests=16", uri, back)).Check("nbdcopy");
            Assert.Equal(File.ReadAllBytes(copy), File.ReadAllBytes(back));
            Assert.Equal(0, await d.StopAsync());
        }

        Assert.Equal(File.ReadAllBytes(copy), File.ReadAllBytes(remote));

        // QEMU's own ssh driver reads the file we wrote the same.
        var qemu = $"json:{{\"driver\":\"raw\",\"file\":{{\"driver\":\"ssh\",\"server\":{{\"host\":\"127.0.0.1\",\"port\":\"{ssh.Port}\"}},\"path\":\"{remote}\",\"host-key-check\":{{\"mode\":\"none\"}}}}}}";
        (await Tool.RunAsync("qemu-img", ["compare", "-U", qemu, copy], env: ssh.Env)).Check("qemu's ssh driver reads the same");
    }

    /// <summary>
    /// A read is cut into 32 KiB SFTP reads on several handles, and a handle's stream keeps what its
    /// last read brought beyond the bytes asked for: small reads next to writes must still see the
    /// writes, and reads across piece boundaries at odd offsets must put every piece in its place.
    /// </summary>
    [Fact]
    public async Task ReadsAfterWritesSeeTheWritesWhateverTheirOffsetAndLength()
    {
        using var dir = new TempDir();
        await using var ssh = await SshServer.StartAsync(dir);
        var remote = dir["remote.raw"];
        (await Tool.ShAsync($"head -c 4M /dev/urandom > {remote}")).Check("fill");
        var copy = dir["copy.raw"];
        File.Copy(remote, copy);
        var sock = dir["nbd.sock"];
        await using var d = await StartAsync(dir, ssh,
            "--blockdev", ssh.NodeOptions(remote).Replace("driver=ssh,", "driver=ssh,node-name=s0,", StringComparison.Ordinal),
            "--nbd-server", $"addr.type=unix,addr.path={sock}",
            "--export", "type=nbd,id=e0,node-name=s0,name=disk,writable=on");
        var uri = $"nbd+unix:///disk?socket={sock}";

        // Small reads all at once, so that many handles each keep the rest of a 32 KiB piece; then,
        // one region at a time, a write inside that rest (on whatever handle is free) and a read of
        // it, which must show the written pattern.
        var regions = Enumerable.Range(0, 48).ToArray();
        var rounds = regions.SelectMany(i => new[] { "-c", $"aio_read {i * 65536} 512" })
            .Concat(["-c", "aio_flush"])
            .Concat(regions.SelectMany(i => new[] { "-c", $"write -P {0x10 + i} {(i * 65536) + 4096} 4096", "-c", $"read -P {0x10 + i} {(i * 65536) + 4096} 4096" }));
        var result = await Tool.RunAsync("qemu-io", ["-f", "raw", .. rounds, uri]);
        result.Check("read, write, read");
        Assert.DoesNotContain("Pattern verification failed", result.Stdout + result.Stderr);
        for (var i = 0; i < 48; i++)
        {
            (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", $"write -P {0x10 + i} {(i * 65536) + 4096} 4096", copy)).Check("same write on the copy");
        }

        // Reads of odd lengths at odd offsets, across piece boundaries.
        var expected = File.ReadAllBytes(copy);
        foreach (var (offset, length) in new[] { (1, 100000), (32767, 32770), (65535, 1 << 20), (3 << 20, 999999) })
        {
            var got = dir[$"got-{offset}"];
            (await Tool.RunAsync("/usr/bin/nbdsh", "-u", uri, "-c", $"open('{got}', 'wb').write(h.pread({length}, {offset}))")).Check("pread");
            Assert.Equal(expected.AsSpan(offset, length).ToArray(), File.ReadAllBytes(got));
        }

        (await Tool.RunAsync("qemu-img", "compare", "-U", "-f", "raw", "-F", "raw", uri, copy)).Check("compare");
    }

    [Fact]
    public async Task Qcow2OverSshIsWrittenCleanAndFileNamesWork()
    {
        using var dir = new TempDir();
        await using var ssh = await SshServer.StartAsync(dir);
        var image = dir["remote.qcow2"];
        (await Tool.RunAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "64M")).Check("create");
        (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 1M", image)).Check("fill");
        var sock = dir["nbd.sock"];
        await using (var d = await StartAsync(dir, ssh,
            "--blockdev", $"driver=qcow2,node-name=q0,file.driver=ssh,file.server.host=127.0.0.1,file.server.port={ssh.Port},file.path={image},file.host-key-check.mode=none",
            "--nbd-server", $"addr.type=unix,addr.path={sock}",
            "--export", "type=nbd,id=e0,node-name=q0,name=disk,writable=on"))
        {
            var uri = $"nbd+unix:///disk?socket={sock}";
            (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "read -P 0x11 0 1M", "-c", "write -P 0x22 3M 5M", "-c", "write -z 0 64k", "-c", "flush", uri)).Check("write through qcow2 over ssh");
            Assert.Equal(0, await d.StopAsync());
        }

        (await Tool.RunAsync("qemu-img", "check", image)).Check("check");
        (await Tool.RunAsync("qemu-io", "-f", "qcow2", "-r", "-c", "read -P 0 0 64k", "-c", "read -P 0x11 64k 960k", "-c", "read -P 0x22 3M 5M", image)).Check("data");

        // An ssh:// file name as the target of drive-backup-like creation: blockdev-create of a remote file.
        var monitor = dir["m.qmp"];
        await using var d2 = await StartAsync(dir, ssh, "--chardev", $"socket,id=m0,path={monitor},server=on,wait=off", "--monitor", "chardev=m0");
        var qmp = await QmpClient.ConnectAsync(monitor);
        var created = dir["created.raw"];
        await qmp.ExecuteAsync("blockdev-create", new JsonObject
        {
            ["job-id"] = "c0",
            ["options"] = new JsonObject
            {
                ["driver"] = "ssh",
                ["location"] = new JsonObject
                {
                    ["server"] = new JsonObject { ["host"] = "127.0.0.1", ["port"] = ssh.Port.ToString() },
                    ["path"] = created,
                    ["host-key-check"] = new JsonObject { ["mode"] = "hash", ["type"] = "sha256", ["hash"] = ssh.HostKeySha256 },
                },
                ["size"] = 3 << 20,
            },
        });
        await qmp.WaitEventAsync("JOB_STATUS_CHANGE", e => e["data"]?["status"]?.GetValue<string>() == "concluded");
        Assert.Equal(3 << 20, new FileInfo(created).Length);
    }

    [Fact]
    public async Task WrongHostKeyMissingFileAndRefusedKeyAreQemusErrorsAndTheDaemonStaysUp()
    {
        using var dir = new TempDir();
        await using var ssh = await SshServer.StartAsync(dir);
        var remote = dir["remote.raw"];
        (await Tool.ShAsync($"head -c 1M /dev/urandom > {remote}")).Check("fill");
        var monitor = dir["m.qmp"];
        var sock = dir["nbd.sock"];
        await using var d = await StartAsync(dir, ssh,
            "--chardev", $"socket,id=m0,path={monitor},server=on,wait=off", "--monitor", "chardev=m0",
            "--blockdev", "driver=null-co,node-name=n0,size=1048576,read-zeroes=on",
            "--nbd-server", $"addr.type=unix,addr.path={sock}",
            "--export", "type=nbd,id=e0,node-name=n0,name=null");
        var qmp = await QmpClient.ConnectAsync(monitor);

        JsonObject Node(string path, JsonObject check, string? user = null) => new()
        {
            ["driver"] = "ssh",
            ["user"] = user ?? Environment.UserName,
            ["node-name"] = "s",
            ["server"] = new JsonObject { ["host"] = "127.0.0.1", ["port"] = ssh.Port.ToString() },
            ["path"] = path,
            ["host-key-check"] = check,
        };

        var wrong = new string('0', 64);
        var (cls, desc) = await qmp.ErrorAsync("blockdev-add", Node(remote, new JsonObject { ["mode"] = "hash", ["type"] = "sha256", ["hash"] = wrong }));
        Assert.Equal("GenericError", cls);
        Assert.Equal($"remote host ssh-ed25519 key fingerprint 'sha256:{ssh.HostKeySha256}' does not match host_key_check 'sha256:{wrong}'", desc);

        (_, desc) = await qmp.ErrorAsync("blockdev-add", Node(dir["missing.raw"], new JsonObject { ["mode"] = "none" }));
        Assert.Equal($"failed to open remote file '{dir["missing.raw"]}': SFTP server: No such file (libssh error code: 1, sftp error code: 2)", desc);

        (_, desc) = await qmp.ErrorAsync("blockdev-add", Node(remote, new JsonObject { ["mode"] = "known_hosts" }));
        Assert.Contains("known_hosts", desc);

        (_, desc) = await qmp.ErrorAsync("blockdev-add", Node(remote, new JsonObject { ["mode"] = "none" }, user: "no-such-user"));
        Assert.Equal("failed to authenticate using publickey authentication and the identities held by your ssh-agent", desc);

        // The daemon still serves, and the right hash opens the node.
        (await Tool.RunAsync("nbdinfo", "--size", $"nbd+unix:///null?socket={sock}")).Check("still serving");
        await qmp.ExecuteAsync("blockdev-add", Node(remote, new JsonObject { ["mode"] = "hash", ["type"] = "sha256", ["hash"] = ssh.HostKeySha256.ToUpperInvariant() }));
        var nodes = (JsonArray)await qmp.ExecuteAsync("query-named-block-nodes");
        Assert.Contains(nodes, n => n?["node-name"]?.GetValue<string>() == "s" && n["drv"]?.GetValue<string>() == "ssh");
    }

    /// <summary>Without an agent, the default identity file under $HOME/.ssh authenticates.</summary>
    [Fact]
    public async Task AnIdentityFileAuthenticatesWithoutAnAgent()
    {
        using var dir = new TempDir();
        await using var ssh = await SshServer.StartAsync(dir);
        var remote = dir["remote.raw"];
        (await Tool.ShAsync($"head -c 2M /dev/urandom > {remote}")).Check("fill");
        var home = dir["home"];
        Directory.CreateDirectory(Path.Combine(home, ".ssh"));
        File.Copy(dir["client_key"], Path.Combine(home, ".ssh", "id_ed25519"));
        var sock = dir["nbd.sock"];
        await using var d = await Daemon.StartAsync("/usr/bin/env", dir,
        [
            "-u", "SSH_AUTH_SOCK", $"HOME={home}", Daemon.ExportServerPath,
            "--blockdev", ssh.NodeOptions(remote).Replace("driver=ssh,", "driver=ssh,node-name=s0,", StringComparison.Ordinal),
            "--nbd-server", $"addr.type=unix,addr.path={sock}",
            "--export", "type=nbd,id=e0,node-name=s0,name=disk",
        ]);
        (await Tool.RunAsync("qemu-img", "compare", "-U", "-f", "raw", "-F", "raw", $"nbd+unix:///disk?socket={sock}", remote)).Check("compare");

        // Without the file (and without an agent) the same node is refused.
        var r = await Tool.RunAsync("/usr/bin/env", ["-u", "SSH_AUTH_SOCK", $"HOME={dir["nohome"]}", Daemon.ExportServerPath, "--blockdev", ssh.NodeOptions(remote) + ",node-name=s1"], TimeSpan.FromSeconds(30));
        Assert.Equal(1, r.ExitCode);
        Assert.EndsWith("failed to authenticate using publickey authentication", r.Stderr.TrimEnd());
    }

    /// <summary>
    /// password-secret logs in with a password (no agent, no identity file): reads through our export
    /// equal the remote file and writes reach it; a wrong password is QEMU's error, the daemon stays up.
    /// </summary>
    [Fact]
    public async Task APasswordSecretLogsInAndAWrongOneIsRefused()
    {
        using var dir = new TempDir();
        var password = await SshServer.SetPasswordUserAsync();
        await using var ssh = await SshServer.StartAsync(dir, passwords: true);

        // The remote file belongs to the password user, and it must reach it through the scratch directory.
        var remote = dir["remote.raw"];
        (await Tool.ShAsync($"chmod 755 {dir.Path} && head -c 6M /dev/urandom > {remote} && chown {SshServer.PasswordUser} {remote}")).Check("fill");
        var copy = dir["copy.raw"];
        File.Copy(remote, copy);
        var monitor = dir["m.qmp"];
        var sock = dir["nbd.sock"];
        await using var d = await Daemon.StartAsync("/usr/bin/env", dir,
        [
            "-u", "SSH_AUTH_SOCK", $"HOME={dir["nohome"]}", Daemon.ExportServerPath,
            "--object", $"secret,id=pw,data={password}",
            "--object", "secret,id=bad,data=not-the-password",
            "--chardev", $"socket,id=m0,path={monitor},server=on,wait=off", "--monitor", "chardev=m0",
            "--blockdev", ssh.NodeOptions(remote) + $",node-name=s0,user={SshServer.PasswordUser},password-secret=pw",
            "--nbd-server", $"addr.type=unix,addr.path={sock}",
            "--export", "type=nbd,id=e0,node-name=s0,name=disk,writable=on",
        ]);
        var uri = $"nbd+unix:///disk?socket={sock}";
        var size = (await Tool.RunAsync("nbdinfo", "--size", uri)).Check("nbdinfo").Stdout.Trim();
        Assert.Equal((6 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture), size);
        (await Tool.RunAsync("qemu-img", "compare", "-U", "-f", "raw", "-F", "raw", uri, copy)).Check("compare");

        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x6b 12345 300000", "-c", "write -P 0x17 4M 1M", "-c", "flush", uri)).Check("write");
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x6b 12345 300000", "-c", "write -P 0x17 4M 1M", copy)).Check("same writes on the copy");
        Assert.Equal(File.ReadAllBytes(copy), File.ReadAllBytes(remote));

        var qmp = await QmpClient.ConnectAsync(monitor);
        JsonObject Node(string secret) => new()
        {
            ["driver"] = "ssh",
            ["node-name"] = "s1",
            ["user"] = SshServer.PasswordUser,
            ["password-secret"] = secret,
            ["server"] = new JsonObject { ["host"] = "127.0.0.1", ["port"] = ssh.Port.ToString(System.Globalization.CultureInfo.InvariantCulture) },
            ["path"] = remote,
            ["host-key-check"] = new JsonObject { ["mode"] = "none" },
        };

        var (cls, desc) = await qmp.ErrorAsync("blockdev-add", Node("bad"));
        Assert.Equal("GenericError", cls);
        Assert.Equal("failed to authenticate using password authentication", desc);

        // The daemon still serves the node opened with the right password, and the right secret opens a second one.
        Assert.False(d.HasExited);
        (await Tool.RunAsync("qemu-img", "compare", "-U", "-f", "raw", "-F", "raw", uri, copy)).Check("compare after the refusal");
        await qmp.ExecuteAsync("blockdev-add", Node("pw"));
        Assert.Equal(0, await d.StopAsync());
    }

    /// <summary>
    /// Writes go out as many SFTP requests in flight: concurrent writes of every size at random
    /// offsets (fio, 2 and 32 deep) and a copy with many requests (nbdcopy) must land byte for byte in
    /// the remote file, and a qcow2 written the same way must check clean.
    /// </summary>
    [Fact]
    public async Task ManyWritesInFlightLandIntactInTheRemoteFile()
    {
        using var dir = new TempDir();
        await using var ssh = await SshServer.StartAsync(dir);
        var source = dir["source.raw"];
        (await Tool.ShAsync($"head -c 48M /dev/urandom > {source}")).Check("source");
        var remote = dir["remote.raw"];
        (await Tool.RunAsync("truncate", "-s", "48M", remote)).Check("remote");
        var image = dir["remote.qcow2"];
        (await Tool.RunAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "48M")).Check("create");
        var sock = dir["nbd.sock"];
        await using (var d = await StartAsync(dir, ssh,
            "--blockdev", ssh.NodeOptions(remote) + ",node-name=s0",
            "--blockdev", $"driver=qcow2,node-name=q0,file.driver=ssh,file.server.host=127.0.0.1,file.server.port={ssh.Port},file.path={image},file.host-key-check.mode=none",
            "--nbd-server", $"addr.type=unix,addr.path={sock}",
            "--export", "type=nbd,id=e0,node-name=s0,name=disk,writable=on",
            "--export", "type=nbd,id=e1,node-name=q0,name=qcow2,writable=on"))
        {
            var uri = $"nbd+unix:///disk?socket={sock}";
            (await Tool.RunAsync("nbdcopy", ["--requests=64", "--request-size=1048576", source, uri], TimeSpan.FromSeconds(120))).Check("nbdcopy");
            Assert.Equal(File.ReadAllBytes(source), File.ReadAllBytes(remote));

            // Random writes of 512 bytes to 1 MiB, unaligned to the SFTP pieces, then read back and
            // verified: 2 deep (each write cut into pieces sent together) on the first half, 32 deep
            // (most writes whole, one handle each) on the second.
            foreach (var (depth, start) in new[] { (2, "0"), (32, "24m") })
            {
                var fio = await Tool.RunAsync("fio", ["--name=random", "--ioengine=nbd", $"--uri={uri}", "--rw=randwrite", "--bsrange=512-1m",
                    $"--iodepth={depth}", $"--offset={start}", "--size=24m", "--verify=crc32c", "--do_verify=1", "--randseed=7", "--output-format=terse"], TimeSpan.FromSeconds(180));
                fio.Check($"fio {depth} deep");
                Assert.DoesNotContain("verify", fio.Stderr);
            }

            // The remote file now holds exactly what the export serves.
            var back = dir["back.raw"];
            (await Tool.RunAsync("nbdcopy", "--requests=16", uri, back)).Check("read back");
            var qcow2 = $"nbd+unix:///qcow2?socket={sock}";
            (await Tool.RunAsync("qemu-img", ["convert", "-n", "-W", "-m", "16", "-f", "raw", "-O", "raw", source, qcow2], TimeSpan.FromSeconds(120))).Check("convert into the qcow2");
            Assert.Equal(0, await d.StopAsync());
            Assert.Equal(File.ReadAllBytes(back), File.ReadAllBytes(remote));
        }

        (await Tool.RunAsync("qemu-img", "check", image)).Check("check");
        (await Tool.RunAsync("qemu-img", "compare", "-f", "qcow2", "-F", "raw", image, source)).Check("qcow2 holds the source");
    }

    /// <summary>
    /// The SSH sessions die under a reader (sshd's session processes killed): the NBD client gets EIO,
    /// and the daemon stays up and keeps serving its other export.
    /// </summary>
    [Fact]
    public async Task ADroppedConnectionIsEioAndTheDaemonStaysUp()
    {
        using var dir = new TempDir();
        await using var ssh = await SshServer.StartAsync(dir);
        var remote = dir["remote.raw"];
        (await Tool.ShAsync($"head -c 8M /dev/urandom > {remote}")).Check("fill");
        var sock = dir["nbd.sock"];
        await using var d = await StartAsync(dir, ssh,
            "--blockdev", ssh.NodeOptions(remote).Replace("driver=ssh,", "driver=ssh,node-name=s0,", StringComparison.Ordinal),
            "--blockdev", "driver=null-co,node-name=n0,size=1048576",
            "--nbd-server", $"addr.type=unix,addr.path={sock}",
            "--export", "type=nbd,id=e0,node-name=s0,name=disk",
            "--export", "type=nbd,id=e1,node-name=n0,name=null");
        var uri = $"nbd+unix:///disk?socket={sock}";
        var reads = Enumerable.Range(0, 400).SelectMany(i => new[] { "-c", $"read {(i % 8) << 20} 1M" });
        var reader = Tool.RunAsync("qemu-io", ["-r", "-f", "raw", .. reads, uri], TimeSpan.FromSeconds(120));
        await Task.Delay(500);
        var sessions = (await Tool.RunAsync("pgrep", "-P", ssh.Pid.ToString())).Check("sshd sessions").Stdout
            .Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.NotEmpty(sessions);
        (await Tool.RunAsync("kill", ["-KILL", .. sessions])).Check("kill the sessions");

        var result = await reader;
        Assert.Contains("Input/output error", result.Stdout + result.Stderr);
        var after = await Tool.RunAsync("qemu-io", "-r", "-f", "raw", "-c", "read 0 64k", uri);
        Assert.Contains("Input/output error", after.Stdout + after.Stderr);
        Assert.False(d.HasExited);
        (await Tool.RunAsync("nbdinfo", "--size", $"nbd+unix:///null?socket={sock}")).Check("the other export still serves");
    }
}
