using System.Buffers.Binary;
using System.Net.Sockets;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Nbd;

/// <summary>
/// Broken framing over a raw socket: each case ends only its own connection; a second client
/// connected throughout keeps working, and the daemon stays up.
/// </summary>
public sealed class MalformedInputTests
{
    private const ulong IHaveOpt = 0x49484156454F5054;
    private const uint RequestMagic = 0x25609513;

    private static async Task<Socket> ConnectAsync(string path)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await s.ConnectAsync(new UnixDomainSocketEndPoint(path));
        return s;
    }

    private static async Task<byte[]> ReadExactlyAsync(Socket s, int n)
    {
        var buf = new byte[n];
        var got = 0;
        while (got < n)
        {
            var r = await s.ReceiveAsync(buf.AsMemory(got), SocketFlags.None);
            if (r == 0)
            {
                throw new EndOfStreamException();
            }

            got += r;
        }

        return buf;
    }

    /// <summary>Reads until the server closes the connection; true if it did within the timeout.</summary>
    private static async Task<bool> ClosedByServerAsync(Socket s)
    {
        var buf = new byte[65536];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        try
        {
            while (await s.ReceiveAsync(buf, SocketFlags.None, cts.Token) > 0)
            {
            }

            return true;
        }
        catch (SocketException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Fixed newstyle handshake up to transmission with NBD_OPT_EXPORT_NAME.</summary>
    private static async Task<Socket> HandshakeAsync(string path, string export)
    {
        var s = await ConnectAsync(path);
        await ReadExactlyAsync(s, 18); // NBDMAGIC, IHAVEOPT, handshake flags
        await s.SendAsync(new byte[] { 0, 0, 0, 3 }, SocketFlags.None); // FIXED_NEWSTYLE | NO_ZEROES
        var name = System.Text.Encoding.UTF8.GetBytes(export);
        var opt = new byte[16 + name.Length];
        BinaryPrimitives.WriteUInt64BigEndian(opt, IHaveOpt);
        BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(8), 1); // EXPORT_NAME
        BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(12), (uint)name.Length);
        name.CopyTo(opt, 16);
        await s.SendAsync(opt, SocketFlags.None);
        await ReadExactlyAsync(s, 10); // size + transmission flags
        return s;
    }

    private static byte[] Request(ushort type, ulong offset, uint length, uint magic = RequestMagic, ushort flags = 0)
    {
        var r = new byte[28];
        BinaryPrimitives.WriteUInt32BigEndian(r, magic);
        BinaryPrimitives.WriteUInt16BigEndian(r.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(r.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(8), 42);
        BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(16), offset);
        BinaryPrimitives.WriteUInt32BigEndian(r.AsSpan(24), length);
        return r;
    }

    /// <summary>Serves a raw image of <paramref name="size"/> filled with <paramref name="pattern"/> as the writable export "disk" on dir/s.sock.</summary>
    private static async Task<Daemon> ServeFilledAsync(TempDir dir, string size, int pattern)
    {
        var image = dir["disk.raw"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", image, size)).Check("create");
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", $"write -P {pattern} 0 {size}", image)).Check("fill");
        return await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
            "--export", "type=nbd,id=e0,node-name=f0,name=disk,writable=on");
    }

    public static TheoryData<string> Cases => new()
    {
        "garbage-handshake", "bad-client-flags", "oversized-option", "bad-request-magic", "truncated-write", "absurd-write",
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task BrokenFramingEndsOnlyThatConnection(string kind)
    {
        using var dir = new TempDir();
        await using var d = await ServeFilledAsync(dir, "4M", 0x3c);
        var sock = dir["s.sock"];

        using var bystander = await HandshakeAsync(sock, "disk");
        using var bad = kind switch
        {
            "garbage-handshake" or "bad-client-flags" or "oversized-option" => await ConnectAsync(sock),
            _ => await HandshakeAsync(sock, "disk"),
        };

        switch (kind)
        {
            case "garbage-handshake":
                await ReadExactlyAsync(bad, 18);
                await bad.SendAsync(System.Text.Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), SocketFlags.None);
                break;
            case "bad-client-flags":
                await ReadExactlyAsync(bad, 18);
                await bad.SendAsync(new byte[] { 0xff, 0xff, 0xff, 0xff }, SocketFlags.None);
                break;
            case "oversized-option":
                await ReadExactlyAsync(bad, 18);
                await bad.SendAsync(new byte[] { 0, 0, 0, 1 }, SocketFlags.None);
                var opt = new byte[16];
                BinaryPrimitives.WriteUInt64BigEndian(opt, IHaveOpt);
                BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(8), 7); // GO
                BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(12), 0x7fffffff);
                await bad.SendAsync(opt, SocketFlags.None);
                break;
            case "bad-request-magic":
                await bad.SendAsync(Request(0, 0, 512, magic: 0xdeadbeef), SocketFlags.None);
                break;
            case "truncated-write":
                await bad.SendAsync(Request(1, 0, 65536), SocketFlags.None);
                await bad.SendAsync(new byte[1000], SocketFlags.None);
                bad.Shutdown(SocketShutdown.Send);
                break;
            case "absurd-write":
                await bad.SendAsync(Request(1, 0, 0xffffffff), SocketFlags.None);
                break;
        }

        Assert.True(await ClosedByServerAsync(bad), $"{kind}: the server kept the connection open");

        // The bystander connected before the bad client still gets correct data.
        await bystander.SendAsync(Request(0, 0, 4096), SocketFlags.None);
        var header = await ReadExactlyAsync(bystander, 16);
        Assert.Equal(0x67446698u, BinaryPrimitives.ReadUInt32BigEndian(header));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4)));
        Assert.All(await ReadExactlyAsync(bystander, 4096), b => Assert.Equal(0x3c, b));

        // A new client connects as usual; the image was not touched by the truncated write.
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "read -P 0x3c 0 4M", $"nbd+unix:///disk?socket={sock}")).Check("qemu-io after " + kind);
        Assert.False(d.HasExited);
    }

    [Fact]
    public async Task ClientsVanishingWithRequestsInFlightDoNotHurtTheDaemon()
    {
        using var dir = new TempDir();
        var image = dir["disk.raw"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", image, "64M")).Check("create");
        await using var d = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
            "--export", "type=nbd,id=e0,node-name=f0,name=disk,writable=on");

        for (var round = 0; round < 20; round++)
        {
            using var s = await HandshakeAsync(dir["s.sock"], "disk");
            for (var i = 0; i < 32; i++)
            {
                await s.SendAsync(Request(0, (ulong)i * 1048576, 1048576), SocketFlags.None);
            }

            s.Close(0); // reset with 32 reads in flight
        }

        (await Tool.RunAsync("fio", "--name=vanish", "--ioengine=nbd", $"--uri=nbd+unix:///disk?socket={dir["s.sock"]}",
            "--rw=randrw", "--bs=4k", "--iodepth=32", "--size=64M", "--time_based", "--runtime=2")).Check("fio");
        (await Tool.RunAsync("nbdinfo", "--size", $"nbd+unix:///disk?socket={dir["s.sock"]}")).Check("nbdinfo");
        Assert.False(d.HasExited);
    }

    /// <summary>
    /// Thousands of hostile inputs (garbage, bad flags, oversized or truncated options, unknown options,
    /// bad magic, 32 MiB reads and writes abandoned half-way, requests with random fields, resets with
    /// requests in flight), four clients at a time. The daemon must stay up and its resident memory bounded:
    /// what it holds must not grow with the number of inputs. A retained 32 MiB buffer per abandoned
    /// request would cost gigabytes here; what is measured (150–180 MiB) is the buffer pool, which may
    /// keep 128 MiB of one size, and a heap the GC does not always give back to the system at once, so
    /// the bounds are an absolute 256 MiB and less than 64 MiB more after a second round as long as the first.
    /// </summary>
    [Fact]
    public async Task ThousandsOfHostileInputsLeaveMemoryBounded()
    {
        using var dir = new TempDir();
        await using var d = await ServeFilledAsync(dir, "64M", 0x5a);
        var sock = dir["s.sock"];

        await StormAsync(sock, seed: 1, inputs: 300);
        var baseline = await SettledRssMibAsync(d.Pid);
        await StormAsync(sock, seed: 2, inputs: 1500);
        var first = await SettledRssMibAsync(d.Pid);
        await StormAsync(sock, seed: 3, inputs: 1500);
        var second = await SettledRssMibAsync(d.Pid);

        Assert.False(d.HasExited);
        Assert.True(second - first < 64, $"RSS grew {second - first:F1} MiB over the second 1,500 inputs (baseline {baseline:F1}, then {first:F1}, {second:F1} MiB)");
        Assert.True(second < 256, $"RSS reached {second:F1} MiB after 3,000 inputs (baseline {baseline:F1}, then {first:F1}, {second:F1} MiB)");
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "read -P 0x5a 0 64M", $"nbd+unix:///disk?socket={sock}")).Check("qemu-io after the storm");
    }

    /// <summary>The daemon's resident set in MiB once it is idle (buffers unused for a while are let go) and has stopped moving.</summary>
    private static async Task<double> SettledRssMibAsync(int pid)
    {
        await Task.Delay(3000);
        double last = -1;
        for (var i = 0; i < 20; i++)
        {
            await Task.Delay(250);
            var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
            var now = double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) / 1024;
            if (Math.Abs(now - last) < 0.5)
            {
                return now;
            }

            last = now;
        }

        return last;
    }

    /// <summary>Sends <paramref name="inputs"/> hostile connections, four at a time, each ending as the client chooses.</summary>
    private static async Task StormAsync(string sock, int seed, int inputs)
    {
        var next = -1;
        async Task Worker(int w)
        {
            var rnd = new Random(seed * 16 + w);
            while (Interlocked.Increment(ref next) < inputs)
            {
                try
                {
                    await HostileAsync(sock, rnd);
                }
                catch (Exception e) when (e is SocketException or EndOfStreamException or OperationCanceledException)
                {
                    // The server closing a hostile connection is the expected outcome.
                }
            }
        }

        await Task.WhenAll(Enumerable.Range(0, 4).Select(Worker));
    }

    private static async Task HostileAsync(string sock, Random rnd)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var kind = rnd.Next(12);
        using var s = kind < 5 ? await ConnectAsync(sock) : await HandshakeAsync(sock, "disk");
        if (kind < 5)
        {
            await ReadExactlyAsync(s, 18);
        }

        var opt = new byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(opt, IHaveOpt);
        switch (kind)
        {
            case 0: // garbage instead of the client flags and options
                await s.SendAsync(RandomBytes(rnd, rnd.Next(1, 300)), SocketFlags.None, cts.Token);
                break;
            case 1: // unknown client flags
                await s.SendAsync(new byte[] { 0x80, 0, 0, 3 }, SocketFlags.None, cts.Token);
                break;
            case 2: // an option longer than any real client sends
                await s.SendAsync(new byte[] { 0, 0, 0, 1 }, SocketFlags.None, cts.Token);
                BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(8), (uint)rnd.Next(1, 11));
                BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(12), (uint)rnd.Next(65537, int.MaxValue));
                await s.SendAsync(opt, SocketFlags.None, cts.Token);
                break;
            case 3: // an option whose data never all arrives
                await s.SendAsync(new byte[] { 0, 0, 0, 1 }, SocketFlags.None, cts.Token);
                BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(8), 7); // GO
                BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(12), 60000);
                await s.SendAsync(opt, SocketFlags.None, cts.Token);
                await s.SendAsync(RandomBytes(rnd, rnd.Next(0, 1000)), SocketFlags.None, cts.Token);
                break;
            case 4: // a few options of any number with random data, replies left unread
                await s.SendAsync(new byte[] { 0, 0, 0, 1 }, SocketFlags.None, cts.Token);
                for (var i = rnd.Next(1, 6); i > 0; i--)
                {
                    var data = RandomBytes(rnd, rnd.Next(0, 200));
                    BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(8), (uint)rnd.Next(0, 16));
                    BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(12), (uint)data.Length);
                    await s.SendAsync(opt, SocketFlags.None, cts.Token);
                    await s.SendAsync(data, SocketFlags.None, cts.Token);
                }

                break;
            case 5: // bad request magic
                await s.SendAsync(Request(0, 0, 4096, magic: (uint)rnd.Next()), SocketFlags.None, cts.Token);
                break;
            case 6: // a 32 MiB write abandoned inside its payload
                await s.SendAsync(Request(1, 0, 32 << 20), SocketFlags.None, cts.Token);
                await s.SendAsync(new byte[rnd.Next(0, 256 * 1024)], SocketFlags.None, cts.Token);
                break;
            case 7: // a 32 MiB read whose reply is never read
                await s.SendAsync(Request(0, (ulong)rnd.Next(0, 32) << 20, 32 << 20), SocketFlags.None, cts.Token);
                break;
            case 8: // a 32 MiB read abandoned after the reply header
                await s.SendAsync(Request(0, 0, 32 << 20), SocketFlags.None, cts.Token);
                await ReadExactlyAsync(s, 16);
                break;
            case 9: // requests with random fields
                for (var i = rnd.Next(1, 8); i > 0; i--)
                {
                    var length = rnd.Next(3) == 0 ? (uint)rnd.Next() : (uint)rnd.Next(0, 1 << 20);
                    await s.SendAsync(Request((ushort)rnd.Next(0, 12), (ulong)rnd.NextInt64(0, 128L << 20), length, flags: (ushort)rnd.Next(0, 1 << 16)), SocketFlags.None, cts.Token);
                }

                break;
            case 10: // 32 reads of 1 MiB, then a reset
                for (var i = 0; i < 32; i++)
                {
                    await s.SendAsync(Request(0, (ulong)i << 20, 1 << 20), SocketFlags.None, cts.Token);
                }

                break;
            default: // a request header cut short
                await s.SendAsync(Request(0, 0, 4096).AsMemory(0, rnd.Next(1, 28)), SocketFlags.None, cts.Token);
                break;
        }

        s.Close(0);
    }

    private static byte[] RandomBytes(Random rnd, int n)
    {
        var b = new byte[n];
        rnd.NextBytes(b);
        return b;
    }
}
