using System.Diagnostics;
using System.Runtime.InteropServices;
using ExportServer.Block.Core;
using ExportServer.Block.Native;
using Xunit;
using static ExportServer.UnitTests.Drivers.DriverTestBed;

namespace ExportServer.UnitTests.Drivers;

/// <summary>
/// Our image locks against QEMU's: the same bytes, the same conflicts, the same messages. OFD locks
/// belong to an open file description, so two nodes of one process conflict just as two processes do.
/// </summary>
public sealed partial class ImageLockTests : IAsyncLifetime
{
    private readonly DriverTestBed _bed = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _bed.DisposeAsync();

    private Task<BlockNode> OpenAsync(string name, string path, string extra = "") =>
        _bed.AddAsync($$"""{"driver":"file","node-name":"{{name}}","filename":{{Json(path)}}{{extra}}}""");

    private static string Hint(string path) => $"\nIs another process using the image [{path}]?";

    [Fact]
    public async Task SecondWriterAndReaderAreRefusedInQemuWords()
    {
        var path = _bed.CreateFile("a.img", 65536);
        await OpenAsync("w", path);

        var e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync("w2", path));
        Assert.Equal("Failed to get \"write\" lock" + Hint(path), e.MessageWithHint);
        Assert.Equal(Errno.EBUSY, e.Errno);

        // A QMP error shows the message alone: QEMU leaves hints out of a command's error.
        Assert.Equal("Failed to get \"write\" lock", e.Message);

        e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync("r", path, ""","read-only":true"""));
        Assert.Equal("Failed to get shared \"write\" lock" + Hint(path), e.MessageWithHint);

        await OpenAsync("shared", path, ""","read-only":true,"force-share":true""");
        await OpenAsync("unlocked", path, ""","locking":"off" """);
    }

    [Fact]
    public async Task ReadersShareAndKeepWritersOut()
    {
        var path = _bed.CreateFile("r.img", 65536);
        await OpenAsync("r1", path, ""","read-only":true""");
        await OpenAsync("r2", path, ""","read-only":true""");

        var e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync("w", path));
        Assert.Equal("Failed to get \"write\" lock" + Hint(path), e.MessageWithHint);
    }

    [Fact]
    public async Task ClosingTheNodeReleasesItsLocks()
    {
        var path = _bed.CreateFile("c.img", 65536);
        await OpenAsync("w", path);
        await _bed.Graph.RemoveAsync("w");

        var again = await OpenAsync("w", path);
        Assert.False(again.IsReadOnly);
    }

    [Fact]
    public async Task ClosingTheNodeReleasesItsLocksWhileACopyOfItsDescriptorLives()
    {
        // A process started from another thread holds a copy of every descriptor until it executes
        // its program; a close alone releases the locks only after that.
        var path = _bed.CreateFile("d.img", 65536);
        await OpenAsync("w", path);
        var fd = Directory.GetFiles("/proc/self/fd")
            .Select(link => (Fd: int.Parse(Path.GetFileName(link)), Target: new FileInfo(link).LinkTarget))
            .Single(entry => entry.Target == path).Fd;
        var copy = Dup(fd);
        Assert.True(copy >= 0);
        try
        {
            await _bed.Graph.RemoveAsync("w");
            var again = await OpenAsync("w", path);
            Assert.False(again.IsReadOnly);
        }
        finally
        {
            _ = LibC.Close(copy);
        }
    }

    [LibraryImport("libc", EntryPoint = "dup")]
    private static partial int Dup(int fd);

    [Fact]
    public async Task QemuToolsSeeOurWriteLock()
    {
        var path = _bed.PathOf("q.qcow2");
        Assert.Equal(0, Run("qemu-img", "create", "-q", "-f", "qcow2", path, "1M").Exit);
        await OpenAsync("w", path);

        // qemu-img info opens a qcow2 image without sharing write; -U shares everything.
        var (exit, output) = Run("qemu-img", "info", path);
        Assert.NotEqual(0, exit);
        Assert.Contains("Failed to get shared \"write\" lock" + Hint(path), output);
        Assert.Equal(0, Run("qemu-img", "info", "-U", path).Exit);

        (exit, output) = Run("qemu-io", "-f", "raw", "-c", "write 0 512", path);
        Assert.NotEqual(0, exit);
        Assert.Contains("Failed to get \"write\" lock" + Hint(path), output);
    }

    [Fact]
    public async Task WeSeeQemuIosWriteLock()
    {
        var path = _bed.CreateFile("held.img", 65536);
        var info = new ProcessStartInfo("qemu-io")
        {
            ArgumentList = { "-f", "raw", "-c", "sleep 120000", path },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var qemu = Process.Start(info)!;
        try
        {
            await WaitForWriteLockAsync(qemu, path);
            var e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync("mine", path, ""","read-only":true"""));
            Assert.Equal("Failed to get shared \"write\" lock" + Hint(path), e.MessageWithHint);

            // qemu-io writes and shares write; we refuse to share it, so we give way.
            e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync("mine", path));
            Assert.Equal("Failed to get shared \"write\" lock" + Hint(path), e.MessageWithHint);

            var shared = await OpenAsync("shared", path, ""","read-only":true,"force-share":true""");
            Assert.True(shared.IsReadOnly);
        }
        finally
        {
            qemu.Kill();
            await qemu.WaitForExitAsync();
        }
    }

    /// <summary>
    /// A read-only node reopened read-write (a commit into a backing file) gets a new descriptor with
    /// the writer's locks. While another opener does not share writing the reopen is refused and the
    /// node keeps its mode and its locks; once it can, it writes and grows the file, and going back
    /// read-only refuses writers again.
    /// </summary>
    [Fact]
    public async Task ReopeningReadWriteTakesTheWriteLockOrLeavesTheNodeAsItWas()
    {
        var path = _bed.CreateFile("b.img", 65536);
        var node = await OpenAsync("b", path, ""","read-only":true""");
        await OpenAsync("other", path, ""","read-only":true""");

        var e = await Assert.ThrowsAsync<BlockException>(() => node.SetReadOnlyAsync(false).AsTask());
        Assert.Equal("Failed to get \"write\" lock" + Hint(path), e.MessageWithHint);
        Assert.True(node.IsReadOnly);
        await node.ReadAsync(0, new byte[4096]);

        await _bed.Graph.RemoveAsync("other");
        e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync("w", path));
        Assert.Equal("Failed to get \"write\" lock" + Hint(path), e.MessageWithHint);

        await node.SetReadOnlyAsync(false);
        Assert.False(node.IsReadOnly);
        await node.TruncateAsync(2 * 65536);
        await node.WriteAsync(65536, Enumerable.Repeat((byte)0x5c, 65536).ToArray());
        var bytes = await File.ReadAllBytesAsync(path);
        Assert.Equal(2 * 65536, bytes.Length);
        Assert.All(bytes[65536..], b => Assert.Equal(0x5c, b));
        e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync("r", path, ""","read-only":true"""));
        Assert.Equal("Failed to get shared \"write\" lock" + Hint(path), e.MessageWithHint);

        await node.SetReadOnlyAsync(true);
        await OpenAsync("r", path, ""","read-only":true""");
        e = await Assert.ThrowsAsync<BlockException>(() => OpenAsync("w", path));
        Assert.Equal("Failed to get \"write\" lock" + Hint(path), e.MessageWithHint);
    }

    /// <summary>
    /// Waits until another process holds the "write" permission byte. Probing by opening a node would
    /// take our own locks and could make qemu-io give up while it starts.
    /// </summary>
    private static async Task WaitForWriteLockAsync(Process qemu, string path)
    {
        using var handle = File.OpenHandle(path);
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!IsWriteByteLocked(handle))
        {
            if (qemu.HasExited)
            {
                Assert.Fail($"qemu-io exited with {qemu.ExitCode}: {await qemu.StandardError.ReadToEndAsync()}");
            }

            Assert.True(DateTime.UtcNow < deadline, "qemu-io never took its locks");
            await Task.Delay(50);
        }
    }

    private static unsafe bool IsWriteByteLocked(Microsoft.Win32.SafeHandles.SafeFileHandle handle)
    {
        var fl = new Flock { Type = LibC.F_WRLCK, Start = 101, Length = 1 };
        Assert.Equal(0, LibC.FcntlLock(handle.DangerousGetHandle(), LibC.F_OFD_GETLK, &fl));
        return fl.Type != LibC.F_UNLCK;
    }
}
