using System.Text.RegularExpressions;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>
/// The image file grows by whole steps while allocating and loses the unused rest at close: while
/// open, an image (as a kill would leave it) checks clean; after close its file ends where qemu-img
/// says the image ends, and its content is what was written.
/// </summary>
public sealed class Qcow2FileGrowthTests
{
    private static long ImageEnd(string img)
    {
        var output = Run("qemu-img", "check", img).Output;
        var m = Regex.Match(output, @"Image end offset: (\d+)");
        Assert.True(m.Success, output);
        return long.Parse(m.Groups[1].Value);
    }

    [Fact]
    public async Task FileGrowsInStepsAndIsCutBackAtClose()
    {
        using var dir = new TempDir();
        var img = dir["g.qcow2"];
        Ok("qemu-img", "create", "-f", "qcow2", img, "64M");
        var created = new FileInfo(img).Length;
        var data = new byte[3 * 1024 * 1024 + 4096];
        new Random(7).NextBytes(data);

        await using var h = new Qcow2Harness();
        var node = await h.OpenAsync(img);
        await node.WriteAsync(1024 * 1024, data);
        await node.FlushAsync();

        var file = h.Files.Opened[img];
        Assert.True(file.Length >= created + data.Length);
        Assert.Equal(0, file.Length % (16 * 1024 * 1024));
        h.Save(img, dir["open.qcow2"]);
        var (code, output) = Run("qemu-img", "check", dir["open.qcow2"]);
        Assert.True(code == 0, output);

        await h.Graph.CloseAllAsync();
        h.Save(img);
        Assert.True(new FileInfo(img).Length < 16 * 1024 * 1024);
        Assert.Equal(ImageEnd(img), new FileInfo(img).Length);
        var raw = ConvertToRaw(img, dir.Path);
        Assert.Equal(data, raw.AsSpan(1024 * 1024, data.Length).ToArray());
    }
}
