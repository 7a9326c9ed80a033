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

    public static TheoryData<string> Cases => new()
    {
        "garbage-handshake", "bad-client-flags", "oversized-option", "bad-request-magic", "truncated-write", "absurd-write",
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task BrokenFramingEndsOnlyThatConnection(string kind)
    {
        using var dir = new TempDir();
        var image = dir["disk.raw"];
        (await Tool.RunAsync("qemu-img", "create", "-f", "raw", image, "4M")).Check("create");
        (await Tool.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x3c 0 4M", image)).Check("fill");
        await using var d = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f0,filename={image}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
            "--export", "type=nbd,id=e0,node-name=f0,name=disk,writable=on");
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
}
