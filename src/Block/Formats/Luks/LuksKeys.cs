using System.Security.Cryptography;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// Key slots: unlocking the master key with a passphrase (each active slot's PBKDF2 key decrypts its
/// split key, the splitter merges it, and the master key digest confirms it), and filling a slot.
/// </summary>
internal static class LuksKeys
{
    /// <summary>
    /// The master key that <paramref name="passphrase"/> unlocks, or QEMU's "Invalid password, cannot
    /// unlock any keyslot". <paramref name="readMaterial"/> reads a slot's key material (offset, bytes).
    /// </summary>
    public static async ValueTask<(byte[] Key, int Slot)> UnlockAsync(
        LuksHeader header, LuksCipherSpec spec, LuksHash hash, byte[] passphrase, Func<long, int, ValueTask<byte[]>> readMaterial)
    {
        for (var i = 0; i < header.Slots.Length; i++)
        {
            var slot = header.Slots[i];
            if (!slot.Active)
            {
                continue;
            }

            var length = ((header.KeyBytes * (int)slot.Stripes) + LuksFormat.SectorSize - 1) / LuksFormat.SectorSize * LuksFormat.SectorSize;
            var material = await readMaterial((long)slot.KeyOffsetSector * LuksFormat.SectorSize, length).ConfigureAwait(false);
            try
            {
                if (TryUnlockSlot(header, spec, hash, slot, passphrase, material) is { } key)
                {
                    return (key, i);
                }
            }
            finally
            {
                CryptographicOperations.ZeroMemory(material);
            }
        }

        throw new BlockException(Errno.EPERM, "Invalid password, cannot unlock any keyslot");
    }

    private static byte[]? TryUnlockSlot(LuksHeader header, LuksCipherSpec spec, LuksHash hash, LuksKeySlot slot, byte[] passphrase, byte[] material)
    {
        var slotKey = new byte[header.KeyBytes];
        var key = new byte[header.KeyBytes];
        try
        {
            hash.Pbkdf2(passphrase, slot.Salt, slot.Iterations, slotKey);
            using (var cipher = new LuksSectorCipher(spec, slotKey))
            {
                cipher.Decrypt(0, material);
            }

            LuksAntiForensic.Merge(hash, material, (int)slot.Stripes, key);
            if (MatchesDigest(header, hash, key))
            {
                var found = key;
                key = [];
                return found;
            }

            return null;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(slotKey);
            CryptographicOperations.ZeroMemory(key);
        }
    }

    public static bool MatchesDigest(LuksHeader header, LuksHash hash, ReadOnlySpan<byte> key)
    {
        Span<byte> digest = stackalloc byte[LuksFormat.DigestLength];
        hash.Pbkdf2(key, header.DigestSalt, header.DigestIterations, digest);
        return CryptographicOperations.FixedTimeEquals(digest, header.Digest);
    }

    /// <summary>
    /// A new active slot for <paramref name="passphrase"/> at <paramref name="keyOffsetSector"/>, and its
    /// encrypted split key (whole sectors) to write there.
    /// </summary>
    public static (LuksKeySlot Slot, byte[] Material) MakeSlot(
        LuksCipherSpec spec, LuksHash hash, ReadOnlySpan<byte> masterKey, ReadOnlySpan<byte> passphrase, uint iterations, uint keyOffsetSector)
    {
        var salt = RandomNumberGenerator.GetBytes(LuksFormat.SaltLength);
        var splitLength = masterKey.Length * (int)LuksFormat.Stripes;
        var material = new byte[(splitLength + LuksFormat.SectorSize - 1) / LuksFormat.SectorSize * LuksFormat.SectorSize];
        LuksAntiForensic.Split(hash, masterKey, (int)LuksFormat.Stripes, material.AsSpan(0, splitLength));
        var slotKey = new byte[masterKey.Length];
        try
        {
            hash.Pbkdf2(passphrase, salt, iterations, slotKey);
            using var cipher = new LuksSectorCipher(spec, slotKey);
            cipher.Encrypt(0, material);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(slotKey);
        }

        return (new LuksKeySlot(true, iterations, salt, keyOffsetSector, LuksFormat.Stripes), material);
    }
}
