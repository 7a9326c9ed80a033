using System.Security.Cryptography;
using System.Text;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// Writes a new LUKS1 image as QEMU's qcrypto_block_luks_create lays it out: the header, eight key
/// slots of key material each rounded to 4 KiB (slot 0 filled with the passphrase), the payload after
/// them, and PBKDF2 counts measured on this machine for the requested time.
/// </summary>
internal static class LuksCreator
{
    public static async ValueTask CreateAsync(BlockNode file, LuksCreateOptions options, byte[] passphrase)
    {
        var region = MakeRegion(options.Crypto, passphrase);
        if (file.Length != 0)
        {
            await file.TruncateAsync(0).ConfigureAwait(false);
        }

        await file.TruncateAsync(region.Length + options.Size).ConfigureAwait(false);
        await file.WriteAsync(0, region).ConfigureAwait(false);
        if (options.Preallocation is "falloc" or "full" && options.Size > 0)
        {
            await file.WriteZeroesAsync(region.Length, options.Size).ConfigureAwait(false);
        }

        await file.FlushAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// The header region of a new volume, as long as its payload offset: the header, slot 0's key
    /// material for <paramref name="passphrase"/>, zeroes in the other slots.
    /// </summary>
    public static byte[] MakeRegion(LuksCryptoOptions options, byte[] passphrase)
    {
        var spec = options.Cipher;
        var hash = options.Hash;
        var keyBytes = spec.KeyBytes;
        var masterKey = RandomNumberGenerator.GetBytes(keyBytes);
        try
        {
            var digestSalt = RandomNumberGenerator.GetBytes(LuksFormat.SaltLength);
            var digestIterations = Iterations(hash, LuksFormat.DigestLength, options.IterTime / 8, LuksFormat.MinDigestIterations);
            var digest = new byte[LuksFormat.DigestLength];
            hash.Pbkdf2(masterKey, digestSalt, digestIterations, digest);

            const uint headerSectors = LuksFormat.KeySlotOffset / LuksFormat.SectorSize;
            var slotSectors = LuksFormat.SplitKeySectors(keyBytes);
            var slots = new LuksKeySlot[LuksFormat.SlotCount];
            for (var i = 0; i < slots.Length; i++)
            {
                slots[i] = LuksKeySlot.Empty(headerSectors + ((uint)i * slotSectors));
            }

            var slotIterations = Iterations(hash, keyBytes, options.IterTime, LuksFormat.MinSlotIterations);
            var (slot, material) = LuksKeys.MakeSlot(spec, hash, masterKey, passphrase, slotIterations, slots[0].KeyOffsetSector);
            slots[0] = slot;
            var header = new LuksHeader
            {
                CipherName = spec.HeaderCipherName,
                CipherMode = spec.HeaderCipherMode,
                HashSpec = hash.Name,
                PayloadOffsetSector = headerSectors + (LuksFormat.SlotCount * slotSectors),
                KeyBytes = keyBytes,
                Digest = digest,
                DigestSalt = digestSalt,
                DigestIterations = digestIterations,
                Uuid = Guid.NewGuid().ToString(),
                Slots = slots,
            };

            var region = new byte[header.PayloadOffset];
            header.Write(region);
            material.CopyTo(region, (long)slot.KeyOffsetSector * LuksFormat.SectorSize);
            return region;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(masterKey);
        }
    }

    /// <summary>PBKDF2 iterations for <paramref name="milliseconds"/>, at least <paramref name="minimum"/>, within the header's 32 bits.</summary>
    public static uint Iterations(LuksHash hash, int outputLength, long milliseconds, ulong minimum)
    {
        var iterations = Math.Max(hash.IterationsFor(outputLength, Math.Max(milliseconds, 1)), minimum);
        if (iterations > uint.MaxValue)
        {
            throw BlockException.Invalid($"PBKDF iterations {iterations} larger than {uint.MaxValue}");
        }

        return (uint)iterations;
    }

    /// <summary>The passphrase of <paramref name="secretId"/> as UTF-8 bytes (QEMU's qcrypto_secret_lookup_as_utf8).</summary>
    public static byte[] Passphrase(NamedObjects objects, string secretId) => Encoding.UTF8.GetBytes(Secrets.Secrets.LookupUtf8(objects, secretId));
}
