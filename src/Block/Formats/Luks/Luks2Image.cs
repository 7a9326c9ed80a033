using System.Security.Cryptography;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// Opens a LUKS2 image (cryptsetup's format; QEMU reads LUKS1 only): the newer of the two valid
/// headers, its one data segment, and the volume key unlocked from a key slot. The headers are only
/// read: writes go to the data segment, so a header needing repair is left as cryptsetup would find it.
/// </summary>
internal static class Luks2Image
{
    /// <summary>A header that passed every check: its binary part and its metadata.</summary>
    private sealed record Candidate(Luks2BinaryHeader Header, Luks2Metadata Metadata);

    public static async ValueTask<LuksNode> OpenNodeAsync(string nodeName, bool readOnly, BlockNode file, byte[] passphrase)
    {
        var fileLength = file.Length;
        var (header, metadata) = await ReadHeaderAsync(file, fileLength).ConfigureAwait(false);
        if (metadata.Requirements.Length > 0)
        {
            throw BlockException.NotSupported($"luks: LUKS2 requirement '{Luks2Json.Shorten(metadata.Requirements[0])}' is not supported");
        }

        if (metadata.Segments.Count != 1)
        {
            throw BlockException.NotSupported($"luks: LUKS2 images with {metadata.Segments.Count} data segments are not supported");
        }

        var segment = metadata.Segments[0];
        if (segment.Type != "crypt")
        {
            throw BlockException.NotSupported($"luks: LUKS2 segment type '{Luks2Json.Shorten(segment.Type)}' is not supported");
        }

        if (segment.Integrity)
        {
            throw BlockException.NotSupported("luks: LUKS2 authenticated encryption (segment integrity) is not supported");
        }

        if (segment.IvTweak != 0)
        {
            throw BlockException.NotSupported($"luks: LUKS2 segment IV tweak {segment.IvTweak} is not supported");
        }

        var (digest, key) = await UnlockAsync(metadata, segment, passphrase, file).ConfigureAwait(false);
        try
        {
            var spec = LuksCipherSpec.FromLuks2(segment.Encryption, key.Length);
            var payload = new LuksPayload(segment.Offset, segment.Size, segment.SectorSize);
            var info = metadata.Describe(segment, spec, digest, header.Uuid);
            return new LuksNode(nodeName, readOnly, file, payload, new LuksSectorCipher(spec, key, segment.SectorSize), info);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(key);
        }
    }

    /// <summary>
    /// The header to trust, as cryptsetup picks it: each of the two valid (binary checks, checksum, JSON),
    /// the one with the higher sequence number when both are; the secondary searched at every allowed
    /// offset when the primary cannot say where it is.
    /// </summary>
    private static async ValueTask<Candidate> ReadHeaderAsync(BlockNode file, long fileLength)
    {
        var (primary, primaryError, primarySize) = await TryReadAsync(file, 0, secondary: false, fileLength).ConfigureAwait(false);
        Candidate? secondary = null;
        string? secondaryError = null;
        var offsets = primarySize is { } size ? [size] : Luks2BinaryHeader.SecondaryOffsets;
        foreach (var offset in offsets)
        {
            var (found, error, _) = await TryReadAsync(file, offset, secondary: true, fileLength).ConfigureAwait(false);
            if (found is not null)
            {
                secondary = found;
                break;
            }

            if (secondaryError is null or Luks2BinaryHeader.NoMagic)
            {
                secondaryError = error;
            }
        }

        if (primary is not null && (secondary is null || primary.Header.Sequence >= secondary.Header.Sequence))
        {
            return primary;
        }

        if (secondary is not null)
        {
            return secondary;
        }

        throw BlockException.Invalid(primaryError == secondaryError
            ? $"luks: no valid LUKS2 header: {primaryError} (both headers)"
            : $"luks: no valid LUKS2 header: primary: {primaryError}; secondary: {secondaryError}");
    }

    /// <summary>
    /// One header at <paramref name="offset"/>: the candidate, or why it is not one; and the area size its
    /// binary part gives when that part is sound (where the secondary must then lie).
    /// </summary>
    private static async ValueTask<(Candidate? Candidate, string? Error, long? AreaSize)> TryReadAsync(BlockNode file, long offset, bool secondary, long fileLength)
    {
        if (offset + Luks2BinaryHeader.Length > fileLength)
        {
            return (null, $"header at 0x{offset:x} lies beyond the end of the file", null);
        }

        var binary = new byte[Luks2BinaryHeader.Length];
        await file.ReadAsync(offset, binary).ConfigureAwait(false);
        Luks2BinaryHeader header;
        try
        {
            header = Luks2BinaryHeader.Read(binary, offset, secondary);
        }
        catch (BlockException e)
        {
            return (null, e.Message, null);
        }

        try
        {
            if (offset + header.AreaSize > fileLength)
            {
                throw BlockException.Invalid($"header area [0x{offset:x}, +0x{header.AreaSize:x}) lies beyond the end of the file");
            }

            var area = new byte[header.AreaSize];
            await file.ReadAsync(offset, area).ConfigureAwait(false);
            header.VerifyChecksum(area);
            var metadata = Luks2Metadata.Read(area.AsSpan(Luks2BinaryHeader.Length), header.AreaSize, fileLength);
            return (new Candidate(header, metadata), null, header.AreaSize);
        }
        catch (BlockException e)
        {
            return (null, e.Message, header.AreaSize);
        }
    }

    /// <summary>
    /// The volume key of <paramref name="segment"/> that <paramref name="passphrase"/> unlocks: key slots
    /// of high priority first, then the normal ones (cryptsetup never tries priority 0 for a passphrase).
    /// A slot that cannot be tried here (an unknown cipher, too little memory) is skipped; if no slot can
    /// be tried its reason is the error, otherwise QEMU's "Invalid password".
    /// </summary>
    private static async ValueTask<(Luks2Digest Digest, byte[] Key)> UnlockAsync(Luks2Metadata metadata, Luks2Segment segment, byte[] passphrase, BlockNode file)
    {
        BlockException? unusable = null;
        var tried = false;
        var order = metadata.Keyslots
            .Where(k => k.Priority != Luks2Keyslot.PriorityIgnore)
            .OrderByDescending(k => k.Priority)
            .ThenBy(k => k.Id);
        foreach (var slot in order)
        {
            var digest = metadata.Digests.FirstOrDefault(d => d.Covers(slot, segment));
            if (digest is null)
            {
                continue;
            }

            try
            {
                // The segment's cipher is checked before the costly derivation.
                LuksCipherSpec.FromLuks2(segment.Encryption, slot.KeySize);
            }
            catch (BlockException e)
            {
                throw new BlockException(e.Errno, $"luks: LUKS2 segment {segment.Id}: {e.Message}");
            }

            byte[]? key;
            try
            {
                key = await TryUnlockSlotAsync(slot, digest, passphrase, file).ConfigureAwait(false);
            }
            catch (BlockException e)
            {
                unusable ??= new BlockException(e.Errno, $"{e.Message} (keyslot {slot.Id})");
                continue;
            }

            tried = true;
            if (key is not null)
            {
                return (digest, key);
            }
        }

        throw tried || unusable is null
            ? new BlockException(Errno.EPERM, "Invalid password, cannot unlock any keyslot")
            : unusable;
    }

    private static async ValueTask<byte[]?> TryUnlockSlotAsync(Luks2Keyslot slot, Luks2Digest digest, byte[] passphrase, BlockNode file)
    {
        var areaSpec = LuksCipherSpec.FromLuks2(slot.AreaEncryption, slot.AreaKeySize);
        var afHash = LuksHash.Parse(slot.AfHash);
        LuksHash.Parse(digest.Hash);
        var material = new byte[slot.MaterialLength];
        var areaKey = new byte[slot.AreaKeySize];
        var key = new byte[slot.KeySize];
        try
        {
            await file.ReadAsync(slot.AreaOffset, material).ConfigureAwait(false);
            slot.Kdf.Derive(passphrase, areaKey);
            using (var cipher = new LuksSectorCipher(areaSpec, areaKey))
            {
                cipher.Decrypt(0, material);
            }

            LuksAntiForensic.Merge(afHash, material, slot.Stripes, key);
            if (!digest.Matches(key))
            {
                return null;
            }

            var found = key;
            key = [];
            return found;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(material);
            CryptographicOperations.ZeroMemory(areaKey);
            CryptographicOperations.ZeroMemory(key);
        }
    }
}
