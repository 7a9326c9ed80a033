using System.Buffers.Binary;
using ExportServer.Block.Core;
using ExportServer.Block.Formats.Qcow2;
using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>The crypto header extension of encrypted qcow2 images: read from qemu-img's images, written back unchanged, bad ones refused in QEMU's words.</summary>
public sealed class Qcow2CryptoHeaderTests
{
    private const int CryptMethodOffset = 32;

    /// <summary>qemu-img create of a LUKS-encrypted image, retried when qemu-img cannot time its PBKDF round.</summary>
    private static byte[] QemuEncryptedHeader(TempDir dir)
    {
        for (var attempt = 0; ; attempt++)
        {
            var (code, output) = Run("qemu-img", "create", "-f", "qcow2", "--object", "secret,id=s,data=unit", "-o",
                "encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10", dir["e.qcow2"], "1M");
            if (code == 0)
            {
                return File.ReadAllBytes(dir["e.qcow2"]);
            }

            Assert.True(attempt < 30 && output.Contains("Unable to get accurate CPU usage", StringComparison.Ordinal), output);
            Thread.Sleep(37 * (attempt + 1));
        }
    }

    [Fact]
    public void QemuImagesHeaderRegionIsReadAndWrittenBackUnchanged()
    {
        using var dir = new TempDir();
        var bytes = QemuEncryptedHeader(dir);
        var h = Qcow2Header.Read(bytes.AsSpan(0, 65536), bytes.Length, "e");
        Assert.Equal(Qcow2Format.CryptLuks, h.CryptMethod);
        var (offset, length) = h.CryptoHeader!.Value;
        Assert.Equal(0, offset % h.ClusterSize);
        Assert.Equal(2068480, length); // the aes-256-xts layout: 4 KiB of header and eight slots of 252 KiB
        Assert.Equal("LUKS"u8.ToArray(), bytes.AsSpan((int)offset, 4).ToArray());

        var written = new byte[65536];
        h.Write(written);
        Assert.Equal(bytes.AsSpan(0, 4096).ToArray(), written.AsSpan(0, 4096).ToArray());
    }

    public static TheoryData<string, string> Corruptions { get; } = new()
    {
        { "method 0", "CRYPTO header extension only expected with LUKS encryption method" },
        { "method 9", "Unsupported encryption method 9" },
        { "no extension", "Missing CRYPTO header for crypt method 2" },
        { "misaligned", "Encryption header offset '" },
        { "beyond the file", "lies outside the image file" },
        { "short extension", "CRYPTO header extension size 8, but expected size 16" },
    };

    [Theory]
    [MemberData(nameof(Corruptions))]
    public void BadExtensionsAreRefused(string damage, string message)
    {
        using var dir = new TempDir();
        var bytes = QemuEncryptedHeader(dir);
        var h = Qcow2Header.Read(bytes.AsSpan(0, 65536), bytes.Length, "e");
        var (offset, length) = h.CryptoHeader!.Value;
        var fileLength = (long)bytes.Length;
        switch (damage)
        {
            case "method 0": h.CryptMethod = 0; break;
            case "method 9": h.CryptMethod = 9; break;
            case "no extension": h.CryptoHeader = null; break;
            case "misaligned": h.CryptoHeader = (offset + 512, length); break;
            case "beyond the file": fileLength = offset + length - 1; break;
            case "short extension":
                h.CryptoHeader = null;
                h.Extensions.Add(new Qcow2HeaderExtension(Qcow2Format.ExtCrypto, new byte[8]));
                break;
        }

        var written = new byte[65536];
        h.Write(written);
        if (damage == "method 9")
        {
            BinaryPrimitives.WriteUInt32BigEndian(written.AsSpan(CryptMethodOffset), 9);
        }

        var e = Assert.ThrowsAny<BlockException>(() => Qcow2Header.Read(written, fileLength, "e"));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }
}
