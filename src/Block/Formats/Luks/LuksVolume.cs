using System.Security.Cryptography;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// A LUKS1 header region on a node: at offset 0 of a luks image, or where a qcow2 image's crypto
/// header extension points. Offsets in the header (key material, payload) count from the region's
/// start, and nothing is read or written outside <see cref="Length"/> bytes. It unlocks the master
/// key, describes the volume for queries, and adds and erases key slots (x-blockdev-amend).
/// </summary>
internal sealed class LuksVolume
{
    private readonly BlockNode _file;
    private readonly long _base;

    private LuksVolume(BlockNode file, long baseOffset, long length, LuksHeader header, string keySecret)
    {
        _file = file;
        _base = baseOffset;
        Length = length;
        Header = header;
        Hash = LuksHash.Parse(header.HashSpec);
        Spec = LuksCipherSpec.FromHeader(header.CipherName, header.CipherMode, header.KeyBytes);
        KeySecret = keySecret;
    }

    public long Length { get; }

    public LuksHeader Header { get; }

    public LuksCipherSpec Spec { get; }

    public LuksHash Hash { get; }

    /// <summary>The secret the volume was opened with: amend unlocks the master key with it unless told another.</summary>
    public string KeySecret { get; }

    /// <summary>
    /// Reads the header at <paramref name="baseOffset"/> (<paramref name="length"/> bytes of region),
    /// unlocks the master key with the passphrase of <paramref name="keySecret"/> and returns the payload cipher.
    /// </summary>
    public static async ValueTask<(LuksVolume Volume, LuksSectorCipher Cipher)> OpenAsync(
        BlockNode file, long baseOffset, long length, NamedObjects objects, string keySecret)
    {
        var bytes = new byte[LuksFormat.HeaderSize];
        var available = (int)Math.Clamp(Math.Min(length, file.Length - baseOffset), 0, bytes.Length);
        await file.ReadAsync(baseOffset, bytes.AsMemory(0, available)).ConfigureAwait(false);
        var volume = new LuksVolume(file, baseOffset, length, LuksHeader.Read(bytes, length), keySecret);
        var passphrase = LuksCreator.Passphrase(objects, keySecret);
        try
        {
            var (key, _) = await volume.UnlockAsync(passphrase).ConfigureAwait(false);
            try
            {
                return (volume, new LuksSectorCipher(volume.Spec, key));
            }
            finally
            {
                CryptographicOperations.ZeroMemory(key);
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(passphrase);
        }
    }

    private ValueTask<(byte[] Key, int Slot)> UnlockAsync(byte[] passphrase) =>
        LuksKeys.UnlockAsync(Header, Spec, Hash, passphrase, ReadMaterialAsync);

    private async ValueTask<byte[]> ReadMaterialAsync(long offset, int length)
    {
        var material = new byte[length];
        await _file.ReadAsync(_base + offset, material).ConfigureAwait(false);
        return material;
    }

    /// <summary>QEMU's QCryptoBlockInfoLUKS; it follows the key slots as amend changes them.</summary>
    public JsonObject Describe() => Header.Describe(Spec);

    /// <summary>
    /// QAPI QCryptoBlockAmendOptionsLUKS: state=active adds a key slot for new-secret (the master key
    /// unlocked with secret, by default the one the volume was opened with); state=inactive erases the
    /// slot given by keyslot or every slot old-secret opens. Errors and refusals are QEMU's; force
    /// allows overwriting an active slot and erasing the last one.
    /// </summary>
    public async ValueTask AmendAsync(OptionReader o, NamedObjects objects, bool force)
    {
        var state = o.RequireString("state");
        var newSecret = o.GetString("new-secret");
        var oldSecret = o.GetString("old-secret");
        var keyslot = o.GetInt("keyslot");
        var iterTime = LuksCryptoOptions.ReadIterTime(o);
        var secret = o.GetString("secret");
        o.EnsureAllConsumed();
        switch (state)
        {
            case "active":
                await AddSlotAsync(objects, newSecret, oldSecret, keyslot, iterTime, secret ?? KeySecret, force).ConfigureAwait(false);
                break;
            case "inactive":
                if (newSecret is not null)
                {
                    throw BlockException.Invalid("'new-secret' must not be given when erasing keyslots");
                }

                if (iterTime is not null)
                {
                    throw BlockException.Invalid("'iter-time' must not be given when erasing keyslots");
                }

                if (secret is not null)
                {
                    throw BlockException.Invalid("'secret' must not be given when erasing keyslots");
                }

                await EraseSlotsAsync(objects, oldSecret, keyslot, force).ConfigureAwait(false);
                break;
            default:
                throw BlockException.Invalid($"Parameter '{o.FullName("state")}' does not accept value '{state}'");
        }
    }

    private static int CheckSlotIndex(long keyslot) =>
        keyslot is >= 0 and < LuksFormat.SlotCount
            ? (int)keyslot
            : throw BlockException.Invalid($"Invalid keyslot {keyslot} specified, must be between 0 and {LuksFormat.SlotCount - 1}");

    private int ActiveSlots => Header.Slots.Count(s => s.Active);

    private async ValueTask AddSlotAsync(
        NamedObjects objects, string? newSecret, string? oldSecret, long? keyslot, long? iterTime, string secret, bool force)
    {
        if (newSecret is null)
        {
            throw BlockException.Invalid("'new-secret' is required to activate a keyslot");
        }

        if (oldSecret is not null)
        {
            throw BlockException.Invalid("'old-secret' must not be given when activating keyslots");
        }

        int index;
        if (keyslot is { } k)
        {
            index = CheckSlotIndex(k);
        }
        else
        {
            index = Array.FindIndex(Header.Slots, s => !s.Active);
            if (index < 0)
            {
                throw BlockException.Invalid("Can't add a keyslot - all keyslots are in use");
            }
        }

        if (!force && Header.Slots[index].Active)
        {
            throw BlockException.Invalid($"Refusing to overwrite active keyslot {index} - please erase it first");
        }

        var oldPassphrase = LuksCreator.Passphrase(objects, secret);
        byte[]? key = null;
        var newPassphrase = Array.Empty<byte>();
        try
        {
            (key, _) = await UnlockAsync(oldPassphrase).ConfigureAwait(false);
            newPassphrase = LuksCreator.Passphrase(objects, newSecret);
            var iterations = LuksCreator.Iterations(Hash, Header.KeyBytes, iterTime ?? LuksCryptoOptions.DefaultIterTime, LuksFormat.MinSlotIterations);
            var offsetSector = Header.Slots[index].KeyOffsetSector;
            var (slot, material) = LuksKeys.MakeSlot(Spec, Hash, key, newPassphrase, iterations, offsetSector);
            CheckMaterialFits(offsetSector, material.Length);

            // The key material first, then the header that makes the slot active (QEMU's order).
            await _file.WriteAsync(_base + ((long)offsetSector * LuksFormat.SectorSize), material).ConfigureAwait(false);
            await _file.FlushAsync().ConfigureAwait(false);
            Header.Slots[index] = slot;
            await WriteHeaderAsync().ConfigureAwait(false);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(oldPassphrase);
            CryptographicOperations.ZeroMemory(newPassphrase);
            if (key is not null)
            {
                CryptographicOperations.ZeroMemory(key);
            }
        }
    }

    private async ValueTask EraseSlotsAsync(NamedObjects objects, string? oldSecret, long? keyslot, bool force)
    {
        var passphrase = oldSecret is null ? null : LuksCreator.Passphrase(objects, oldSecret);
        try
        {
            if (keyslot is { } k)
            {
                var index = CheckSlotIndex(k);
                if (passphrase is not null && !await OpensAsync(index, passphrase).ConfigureAwait(false))
                {
                    throw BlockException.Invalid($"Given keyslot {index} doesn't contain the given old password for erase operation");
                }

                if (!force && !Header.Slots[index].Active)
                {
                    throw BlockException.Invalid($"Given keyslot {index} is already erased (inactive) ");
                }

                if (!force && ActiveSlots == 1)
                {
                    throw BlockException.Invalid(
                        $"Attempt to erase the only active keyslot {index} which will erase all the data in the image irreversibly - refusing operation");
                }

                await EraseSlotAsync(index).ConfigureAwait(false);
                return;
            }

            if (passphrase is null)
            {
                throw BlockException.Invalid(
                    "To erase keyslot(s), either explicit keyslot index or the password currently contained in them must be given");
            }

            var matching = new List<int>();
            for (var i = 0; i < Header.Slots.Length; i++)
            {
                if (await OpensAsync(i, passphrase).ConfigureAwait(false))
                {
                    matching.Add(i);
                }
            }

            if (matching.Count == 0)
            {
                throw BlockException.Invalid("No keyslots match given (old) password for erase operation");
            }

            if (!force && matching.Count == ActiveSlots)
            {
                throw BlockException.Invalid(
                    "All the active keyslots match the (old) password that was given and erasing them will erase all the data in the image irreversibly - refusing operation");
            }

            foreach (var i in matching)
            {
                await EraseSlotAsync(i).ConfigureAwait(false);
            }
        }
        finally
        {
            if (passphrase is not null)
            {
                CryptographicOperations.ZeroMemory(passphrase);
            }
        }
    }

    /// <summary>Whether the active slot <paramref name="index"/> holds <paramref name="passphrase"/>.</summary>
    private async ValueTask<bool> OpensAsync(int index, byte[] passphrase)
    {
        var slot = Header.Slots[index];
        if (!slot.Active)
        {
            return false;
        }

        var only = Header with { Slots = [.. Header.Slots.Select((s, i) => i == index ? s : s with { Active = false })] };
        try
        {
            var (key, _) = await LuksKeys.UnlockAsync(only, Spec, Hash, passphrase, ReadMaterialAsync).ConfigureAwait(false);
            CryptographicOperations.ZeroMemory(key);
            return true;
        }
        catch (BlockException e) when (e.Errno == Errno.EPERM)
        {
            return false;
        }
    }

    /// <summary>Overwrites the slot's key material with random bytes, then marks it inactive in the header.</summary>
    private async ValueTask EraseSlotAsync(int index)
    {
        var old = Header.Slots[index];
        var length = LuksFormat.SplitKeySectors(Header.KeyBytes) * LuksFormat.SectorSize;
        var split = ((Header.KeyBytes * (int)LuksFormat.Stripes) + LuksFormat.SectorSize - 1) / LuksFormat.SectorSize * LuksFormat.SectorSize;
        var garbage = RandomNumberGenerator.GetBytes((int)Math.Min(length, split));
        CheckMaterialFits(old.KeyOffsetSector, garbage.Length);
        await _file.WriteAsync(_base + ((long)old.KeyOffsetSector * LuksFormat.SectorSize), garbage).ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);
        Header.Slots[index] = LuksKeySlot.Empty(old.KeyOffsetSector);
        await WriteHeaderAsync().ConfigureAwait(false);
    }

    private void CheckMaterialFits(uint offsetSector, int length)
    {
        if (((long)offsetSector * LuksFormat.SectorSize) + length > Math.Min(Length, Header.PayloadOffset))
        {
            throw BlockException.Invalid($"Keyslot at sector {offsetSector} is overlapping with the encrypted payload");
        }
    }

    private async ValueTask WriteHeaderAsync()
    {
        var bytes = new byte[LuksFormat.HeaderSize];
        Header.Write(bytes);
        await _file.WriteAsync(_base, bytes).ConfigureAwait(false);
        await _file.FlushAsync().ConfigureAwait(false);
    }
}
