using System.Buffers.Binary;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Formats;

/// <summary>Opening a damaged image: our daemon refuses it with qemu-storage-daemon's message, and the bytes patched to damage it.</summary>
internal static class OpenErrors
{
    /// <summary>Both daemons open <paramref name="image"/> as <paramref name="format"/> and fail with the same message.</summary>
    public static async Task AssertSameAsQsdAsync(string format, string image, bool readOnly = true)
    {
        var ro = readOnly ? ",read-only=on" : string.Empty;
        string[] args = ["--blockdev", $"driver={format},node-name=n{ro},file.driver=file,file.filename={image}{ro.Replace(",", ",file.", StringComparison.Ordinal)}"];
        var ours = await Tool.RunAsync(Daemon.ExportServerPath, args, TimeSpan.FromSeconds(30));
        var theirs = await Tool.RunAsync("/usr/bin/qemu-storage-daemon", args, TimeSpan.FromSeconds(30));
        Assert.NotEqual(0, theirs.ExitCode);
        Assert.NotEqual(0, ours.ExitCode);
        Assert.Equal(theirs.Stderr.Replace("qemu-storage-daemon:", "export-server:", StringComparison.Ordinal).Trim(), ours.Stderr.Trim());
    }

    public static void PatchLe32(string path, long offset, uint value)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, value);
        Patch(path, offset, bytes);
    }

    public static void PatchLe64(string path, long offset, ulong value)
    {
        var bytes = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
        Patch(path, offset, bytes);
    }

    public static void Patch(string path, long offset, byte[] bytes)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Write);
        f.Position = offset;
        f.Write(bytes);
    }
}
