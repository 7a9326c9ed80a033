using System.Security.Cryptography;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Formats.Luks;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// The encryption of a qcow2 image's data clusters, per 512-byte sector, as QEMU does it:
/// <list type="bullet">
/// <item>LUKS (crypt method 2): a LUKS1 header region inside the image (the crypto header extension)
/// holds the key slots; each sector's IV is its host sector number (its offset in the image file),
/// QEMU's "physical offset" choice for every method but the legacy one.</item>
/// <item>legacy AES (crypt method 1): AES-128-CBC with the passphrase's first 16 bytes as the key
/// (zero padded) and the guest sector number as a plain64 IV. Kept readable only.</item>
/// </list>
/// Compressed clusters are stored unencrypted by QEMU and read here the same way.
/// </summary>
internal sealed class Qcow2Encryption : IDisposable
{
    private const int SectorSize = 512;
    private const int LegacyKeyBytes = 16;

    private readonly LuksSectorCipher _cipher;

    private Qcow2Encryption(LuksSectorCipher cipher, LuksVolume? luks)
    {
        _cipher = cipher;
        Luks = luks;
    }

    /// <summary>The LUKS volume of a crypt method 2 image, or null for the legacy AES method.</summary>
    public LuksVolume? Luks { get; }

    public bool IsLegacyAes => Luks is null;

    public string Format => IsLegacyAes ? "aes" : "luks";

    /// <summary>Unlocks the image's encryption with the passphrase of <paramref name="keySecret"/>.</summary>
    public static async ValueTask<Qcow2Encryption> OpenAsync(BlockNode file, Qcow2Header header, NamedObjects objects, string keySecret)
    {
        if (header.CryptMethod == Qcow2Format.CryptAes)
        {
            var passphrase = LuksCreator.Passphrase(objects, keySecret);
            var key = new byte[LegacyKeyBytes];
            try
            {
                passphrase.AsSpan(0, Math.Min(passphrase.Length, LegacyKeyBytes)).CopyTo(key);
                var spec = new LuksCipherSpec(LegacyKeyBytes, LuksCipherMode.Cbc, LuksIvGen.Plain64, null);
                return new Qcow2Encryption(new LuksSectorCipher(spec, key), null);
            }
            finally
            {
                CryptographicOperations.ZeroMemory(passphrase);
                CryptographicOperations.ZeroMemory(key);
            }
        }

        var (offset, length) = header.CryptoHeader!.Value;
        var (volume, cipher) = await LuksVolume.OpenAsync(file, offset, length, objects, keySecret).ConfigureAwait(false);
        return new Qcow2Encryption(cipher, volume);
    }

    /// <summary>Encrypts whole sectors stored at <paramref name="host"/> for guest offset <paramref name="guest"/>.</summary>
    public void Encrypt(long host, long guest, Span<byte> data) => _cipher.Encrypt(Sector(host, guest), data);

    public void Decrypt(long host, long guest, Span<byte> data) => _cipher.Decrypt(Sector(host, guest), data);

    private long Sector(long host, long guest) => (IsLegacyAes ? guest : host) / SectorSize;

    /// <summary>QAPI ImageInfoSpecificQCow2Encryption: the format, and for LUKS its QCryptoBlockInfoLUKS.</summary>
    public JsonObject Describe()
    {
        var info = new JsonObject { ["format"] = Format };
        if (Luks is not null)
        {
            foreach (var (key, value) in Luks.Describe().ToArray())
            {
                info[key] = value?.DeepClone();
            }
        }

        return info;
    }

    public void Dispose() => _cipher.Dispose();
}
