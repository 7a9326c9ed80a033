using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// The 592-byte LUKS1 header (big-endian): cipher and hash names, where the payload starts, the
/// master key length and digest, the UUID and eight key slots. <see cref="Read"/> refuses what QEMU
/// refuses and anything that would put key material or payload outside sane bounds.
/// </summary>
internal sealed record LuksHeader
{
    private const int OffVersion = 6;
    private const int OffCipherName = 8;
    private const int OffCipherMode = 40;
    private const int OffHashSpec = 72;
    private const int NameLength = 32;
    private const int OffPayloadOffset = 104;
    private const int OffKeyBytes = 108;
    private const int OffDigest = 112;
    private const int OffDigestSalt = 132;
    private const int OffDigestIterations = 164;
    private const int OffUuid = 168;
    private const int UuidLength = 40;
    private const int OffSlots = 208;
    private const int SlotLength = 48;
    private const int SlotOffActive = 0;
    private const int SlotOffIterations = 4;
    private const int SlotOffSalt = 8;
    private const int SlotOffKeyOffset = 40;
    private const int SlotOffStripes = 44;

    public required string CipherName { get; init; }

    public required string CipherMode { get; init; }

    public required string HashSpec { get; init; }

    public required uint PayloadOffsetSector { get; init; }

    public required int KeyBytes { get; init; }

    public required byte[] Digest { get; init; }

    public required byte[] DigestSalt { get; init; }

    public required uint DigestIterations { get; init; }

    public required string Uuid { get; init; }

    public required LuksKeySlot[] Slots { get; init; }

    public long PayloadOffset => (long)PayloadOffsetSector * LuksFormat.SectorSize;

    public static bool HasMagic(ReadOnlySpan<byte> head) =>
        head.Length >= 8 && head[..6].SequenceEqual(LuksFormat.Magic) && BinaryPrimitives.ReadUInt16BigEndian(head[OffVersion..]) == 1;

    /// <summary>Decodes and validates a header; <paramref name="fileLength"/> bounds the key material.</summary>
    public static LuksHeader Read(ReadOnlySpan<byte> b, long fileLength)
    {
        if (b.Length < LuksFormat.HeaderSize || !b[..6].SequenceEqual(LuksFormat.Magic))
        {
            throw BlockException.Invalid("Volume is not in LUKS format");
        }

        var version = BinaryPrimitives.ReadUInt16BigEndian(b[OffVersion..]);
        if (version != 1)
        {
            throw BlockException.Invalid($"LUKS version {version} is not supported");
        }

        var keyBytes = BinaryPrimitives.ReadUInt32BigEndian(b[OffKeyBytes..]);
        if (keyBytes is 0 or > 128)
        {
            throw BlockException.Invalid($"luks: master key length {keyBytes} is not a valid key size");
        }

        var slots = new LuksKeySlot[LuksFormat.SlotCount];
        var materialSectors = (((long)keyBytes * LuksFormat.Stripes) + LuksFormat.SectorSize - 1) / LuksFormat.SectorSize;
        var payload = BinaryPrimitives.ReadUInt32BigEndian(b[OffPayloadOffset..]);
        for (var i = 0; i < slots.Length; i++)
        {
            var s = b.Slice(OffSlots + (i * SlotLength), SlotLength);
            var state = BinaryPrimitives.ReadUInt32BigEndian(s[SlotOffActive..]);
            if (state != LuksFormat.SlotEnabled && state != LuksFormat.SlotDisabled)
            {
                throw BlockException.Invalid($"Keyslot {i} state (active/disable) is corrupted");
            }

            var slot = new LuksKeySlot(
                state == LuksFormat.SlotEnabled,
                BinaryPrimitives.ReadUInt32BigEndian(s[SlotOffIterations..]),
                s.Slice(SlotOffSalt, LuksFormat.SaltLength).ToArray(),
                BinaryPrimitives.ReadUInt32BigEndian(s[SlotOffKeyOffset..]),
                BinaryPrimitives.ReadUInt32BigEndian(s[SlotOffStripes..]));
            if (slot.Active)
            {
                if (slot.Stripes != LuksFormat.Stripes)
                {
                    throw BlockException.Invalid($"Keyslot {i} is corrupted (stripes {slot.Stripes} != {LuksFormat.Stripes})");
                }

                if (slot.Iterations == 0)
                {
                    throw BlockException.Invalid($"Keyslot {i} is corrupted (iterations 0)");
                }

                var start = (long)slot.KeyOffsetSector;
                if (start * LuksFormat.SectorSize < LuksFormat.HeaderSize || start + materialSectors > payload
                    || (start + materialSectors) * LuksFormat.SectorSize > fileLength)
                {
                    throw BlockException.Invalid($"Keyslot {i} is overlapping with the encrypted payload or beyond the end of the file");
                }
            }

            slots[i] = slot;
        }

        if ((long)payload * LuksFormat.SectorSize > fileLength)
        {
            throw BlockException.Invalid($"LUKS payload is overlapping with the header or beyond the end of the file (payload offset sector {payload})");
        }

        var digestIterations = BinaryPrimitives.ReadUInt32BigEndian(b[OffDigestIterations..]);
        if (digestIterations == 0)
        {
            throw BlockException.Invalid("luks: master key digest iterations 0");
        }

        return new LuksHeader
        {
            CipherName = Text(b.Slice(OffCipherName, NameLength)),
            CipherMode = Text(b.Slice(OffCipherMode, NameLength)),
            HashSpec = Text(b.Slice(OffHashSpec, NameLength)),
            PayloadOffsetSector = payload,
            KeyBytes = (int)keyBytes,
            Digest = b.Slice(OffDigest, LuksFormat.DigestLength).ToArray(),
            DigestSalt = b.Slice(OffDigestSalt, LuksFormat.SaltLength).ToArray(),
            DigestIterations = digestIterations,
            Uuid = Text(b.Slice(OffUuid, UuidLength)),
            Slots = slots,
        };
    }

    /// <summary>QEMU's QCryptoBlockInfoLUKS of this header: every slot, iterations and stripes for the active ones.</summary>
    public JsonObject Describe(LuksCipherSpec spec)
    {
        var slots = new JsonArray();
        foreach (var slot in Slots)
        {
            var entry = new JsonObject { ["active"] = slot.Active };
            if (slot.Active)
            {
                entry["iters"] = slot.Iterations;
            }

            entry["key-offset"] = (long)slot.KeyOffsetSector * LuksFormat.SectorSize;
            if (slot.Active)
            {
                entry["stripes"] = slot.Stripes;
            }

            slots.Add((JsonNode)entry);
        }

        return LuksInfo.Describe(spec, HashSpec, Uuid, slots, PayloadOffset, DigestIterations);
    }

    public void Write(Span<byte> b)
    {
        b[..LuksFormat.HeaderSize].Clear();
        LuksFormat.Magic.CopyTo(b);
        BinaryPrimitives.WriteUInt16BigEndian(b[OffVersion..], 1);
        PutText(b.Slice(OffCipherName, NameLength), CipherName);
        PutText(b.Slice(OffCipherMode, NameLength), CipherMode);
        PutText(b.Slice(OffHashSpec, NameLength), HashSpec);
        BinaryPrimitives.WriteUInt32BigEndian(b[OffPayloadOffset..], PayloadOffsetSector);
        BinaryPrimitives.WriteUInt32BigEndian(b[OffKeyBytes..], (uint)KeyBytes);
        Digest.CopyTo(b[OffDigest..]);
        DigestSalt.CopyTo(b[OffDigestSalt..]);
        BinaryPrimitives.WriteUInt32BigEndian(b[OffDigestIterations..], DigestIterations);
        PutText(b.Slice(OffUuid, UuidLength), Uuid);
        for (var i = 0; i < Slots.Length; i++)
        {
            var s = b.Slice(OffSlots + (i * SlotLength), SlotLength);
            var slot = Slots[i];
            BinaryPrimitives.WriteUInt32BigEndian(s[SlotOffActive..], slot.Active ? LuksFormat.SlotEnabled : LuksFormat.SlotDisabled);
            BinaryPrimitives.WriteUInt32BigEndian(s[SlotOffIterations..], slot.Iterations);
            slot.Salt.CopyTo(s[SlotOffSalt..]);
            BinaryPrimitives.WriteUInt32BigEndian(s[SlotOffKeyOffset..], slot.KeyOffsetSector);
            BinaryPrimitives.WriteUInt32BigEndian(s[SlotOffStripes..], slot.Stripes);
        }
    }

    /// <summary>A NUL-padded ASCII field.</summary>
    public static string Text(ReadOnlySpan<byte> field)
    {
        var end = field.IndexOf((byte)0);
        return Encoding.ASCII.GetString(end < 0 ? field : field[..end]);
    }

    private static void PutText(Span<byte> field, string text)
    {
        var n = Encoding.ASCII.GetBytes(text, field[..^1]);
        field[n..].Clear();
    }
}
