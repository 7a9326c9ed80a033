using ExportServer.Block.Core;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>Writes to images with an external data file; with data-file-raw the data file stays a valid raw image.</summary>
public sealed class Qcow2DataFileTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task WritesGoToTheDataFile(bool rawData)
    {
        using var dir = new TempDir();
        var img = dir["q.qcow2"];
        var data = dir["data.bin"];
        Ok("qemu-img", "create", "-f", "qcow2", "-o", "data_file=" + data + (rawData ? ",data_file_raw=on" : ""), img, "4M");
        Ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x21 0 1M", img);
        var expected = ConvertToRaw(img, dir.Path);

        await using (var h = new Qcow2Harness())
        {
            var node = await h.OpenAsync(img);
            var rnd = new Random(3);
            for (var i = 0; i < 200; i++)
            {
                var off = rnd.NextInt64(4 << 20);
                var len = (int)Math.Min(rnd.Next(1, 200000), (4 << 20) - off);
                if (rnd.Next(4) == 0)
                {
                    await node.WriteZeroesAsync(off, len, rnd.Next(2) == 0 ? ZeroFlags.MayUnmap : ZeroFlags.None);
                    Array.Clear(expected, (int)off, len);
                }
                else
                {
                    var buf = Enumerable.Repeat((byte)(i + 1), len).ToArray();
                    await node.WriteAsync(off, buf);
                    buf.CopyTo(expected, off);
                }
            }

            await h.Graph.CloseAllAsync();
            h.Save(img);
            h.Save(data);
        }

        var (code, output) = Check(img);
        Assert.True(code == 0, output);
        Assert.Equal(expected, ConvertToRaw(img, dir.Path));
        if (rawData)
        {
            Assert.Equal(expected, File.ReadAllBytes(data).AsSpan(0, expected.Length).ToArray());
        }
    }
}
