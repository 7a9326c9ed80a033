using System.Text.RegularExpressions;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Options;

/// <summary>
/// cache.direct=on file nodes under the aio engines: many NBD reads and writes in flight at once
/// (unaligned ones too, so that the engine's read-modify-write and the bounce buffers take part),
/// checked against the same writes applied to a plain copy with qemu-img compare and qemu-img check;
/// and strace showing that aio=io_uring and aio=native go through io_uring while aio=threads uses
/// the I/O threads' pread/pwrite.
/// </summary>
public sealed class DirectIoTests
{
    private const int ImageMiB = 64;

    [Theory]
    [InlineData("raw", "io_uring")]
    [InlineData("qcow2", "io_uring")]
    [InlineData("raw", "native")]
    [InlineData("qcow2", "threads")]
    public async Task WritesAndReadsAtQueueDepthMatchACopy(string format, string aio)
    {
        using var dir = new TempDir();
        var reference = dir["reference.raw"];
        var image = dir[$"disk.{format}"];
        await MakeImagesAsync(reference, image, format);

        await using (var d = await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f,filename={image},cache.direct=on,aio={aio}",
            "--blockdev", $"driver={format},node-name=n,file=f",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
            "--export", "type=nbd,id=e,node-name=n,name=d,writable=on"))
        {
            (await Tool.PythonAsync(QueueDepthScript($"nbd+unix:///d?socket={dir["s.sock"]}", reference), TimeSpan.FromMinutes(3))).Check("libnbd writes and reads");
            Assert.Equal(0, await d.StopAsync());
        }

        (await Tool.RunAsync("qemu-img", "compare", "-f", format, "-F", "raw", image, reference)).Check("qemu-img compare");
        if (format == "qcow2")
        {
            (await Tool.RunAsync("qemu-img", "check", image)).Check("qemu-img check");
        }
    }

    [Theory]
    [InlineData("io_uring", true)]
    [InlineData("native", true)]
    [InlineData("threads", false)]
    public async Task TheAioOptionPicksTheEngine(string aio, bool ring)
    {
        using var dir = new TempDir();
        await using var d = await ServeEmptyImageAsync(dir, $"cache.direct=on,aio={aio}");

        var strace = await Strace.AttachAsync(d.Pid, "io_uring_enter,pread64,pwrite64,pwritev2,fdatasync", dir["trace"]);
        (await Tool.NbdshAsync($"nbd+unix:///f?socket={dir["s.sock"]}", """
            h.pwrite(b"\x07" * 4096, 1 << 20)
            h.pwrite(b"\x08" * 4096, 2 << 20, nbd.CMD_FLAG_FUA)
            assert h.pread(4096, 1 << 20) == b"\x07" * 4096
            assert h.pread(4096, 2 << 20) == b"\x08" * 4096
            h.flush()
            """)).Check("nbdsh");
        var text = string.Join('\n', await strace.StopAsync());

        var entered = Regex.IsMatch(text, @"io_uring_enter\(");
        var direct = Regex.IsMatch(text, @"\b(pread64|pwrite64|pwritev2|fdatasync)\(");
        Assert.True(entered == ring, $"aio={aio}: io_uring_enter {(entered ? "seen" : "not seen")}:\n{text}");
        Assert.True(direct != ring, $"aio={aio}: pread/pwrite/fdatasync {(direct ? "seen" : "not seen")}:\n{text}");
        Assert.Equal(0, await d.StopAsync());
    }

    /// <summary>Serves an empty 8 MiB raw file, as export f on s.sock, through a file node with <paramref name="fileOptions"/>.</summary>
    internal static async Task<Daemon> ServeEmptyImageAsync(TempDir dir, string fileOptions)
    {
        var image = dir["disk.raw"];
        await using (var f = File.Create(image))
        {
            f.SetLength(8 << 20);
        }

        return await Daemon.StartAsync(dir,
            "--blockdev", $"driver=file,node-name=f,filename={image},{fileOptions}",
            "--nbd-server", $"addr.type=unix,addr.path={dir["s.sock"]}",
            "--export", "type=nbd,id=e,node-name=f,name=f,writable=on");
    }

    private static async Task MakeImagesAsync(string reference, string image, string format)
    {
        var random = new byte[ImageMiB << 20];
        new Random(13).NextBytes(random);
        await File.WriteAllBytesAsync(reference, random);
        (await Tool.RunAsync("qemu-img", "convert", "-f", "raw", "-O", format, reference, image)).Check("qemu-img convert");
    }

    /// <summary>
    /// Writes of many sizes and alignments, 16 in flight and each in a 64 KiB slot of its own (so no
    /// two overlap and the order they end in does not matter), every tenth with FUA, each also made
    /// to the reference file; then a flush and reads, 16 in flight, each compared with the reference.
    /// </summary>
    private static string QueueDepthScript(string uri, string reference) => $$"""
        import nbd, os, random
        h = nbd.NBD()
        h.connect_uri("{{uri}}")
        size = h.get_size()
        # A raw node over O_DIRECT advertises its request alignment as the minimum block size.
        align = max(h.get_block_size(nbd.SIZE_MINIMUM), 1)
        def aligned(start, length):
            end = -(-(start + length) // align) * align
            start -= start % align
            return start, end - start
        rnd = random.Random(5)
        slot = 65536
        slots = list(range(size // slot))
        rnd.shuffle(slots)
        def below(n):
            while h.aio_in_flight() >= n:
                h.poll(-1)
        with open("{{reference}}", "r+b") as ref:
            for i, s in enumerate(slots[:600]):
                length = rnd.choice([512, 4096, 4096, 8192, 65536, 3000, 12345])
                start = s * slot + rnd.randrange(0, slot - length + 1)
                if length % 512 == 0 and rnd.random() < 0.7:
                    start -= start % 512
                start, length = aligned(start, length)
                data = os.urandom(length)
                below(16)
                h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), start, flags=nbd.CMD_FLAG_FUA if i % 10 == 0 else 0)
                ref.seek(start)
                ref.write(data)
            below(1)
            h.flush()
            ref.flush()
            reads = []
            for i in range(800):
                length = rnd.choice([4096, 65536, 512, 7777])
                start = rnd.randrange(0, size - length)
                if i % 2 == 0:
                    start -= start % 4096
                start, length = aligned(start, length)
                below(16)
                buf = nbd.Buffer(length)
                h.aio_pread(buf, start)
                reads.append((buf, start, length))
            below(1)
            for buf, start, length in reads:
                ref.seek(start)
                assert buf.to_bytearray() == ref.read(length), f"read of {length} at {start} differs"
        h.shutdown()
        """;
}
