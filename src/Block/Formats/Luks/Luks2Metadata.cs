using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// The JSON metadata of a LUKS2 header: key slots, data segments, digests and the config (the JSON
/// area size, the key slots area size, mandatory requirements). <see cref="Read"/> validates what
/// cryptsetup validates before it trusts a header, and bounds every offset by the file.
/// </summary>
internal sealed record Luks2Metadata
{
    /// <summary>LUKS2 ids: 32 key slots, and ids of segments and digests below the same bound.</summary>
    public const int MaxId = 31;

    public required IReadOnlyList<Luks2Keyslot> Keyslots { get; init; }

    public required IReadOnlyList<Luks2Segment> Segments { get; init; }

    public required IReadOnlyList<Luks2Digest> Digests { get; init; }

    /// <summary>config.requirements.mandatory: features a reader must understand (reencryption, OPAL).</summary>
    public required string[] Requirements { get; init; }

    /// <summary>Parses the JSON text of an area of <paramref name="areaSize"/> bytes (the part after the binary header).</summary>
    public static Luks2Metadata Read(ReadOnlySpan<byte> jsonArea, long areaSize, long fileLength)
    {
        var end = jsonArea.IndexOf((byte)0);
        if (end < 0)
        {
            throw BlockException.Invalid("LUKS2 metadata: the JSON text is not terminated within its area");
        }

        try
        {
            using var document = JsonDocument.Parse(jsonArea[..end].ToArray(), new JsonDocumentOptions { MaxDepth = 16 });
            return Read(new Luks2Json(document.RootElement, "metadata"), areaSize, fileLength);
        }
        catch (JsonException e)
        {
            throw BlockException.Invalid($"LUKS2 metadata: JSON syntax error at byte {e.BytePositionInLine}");
        }
    }

    private static Luks2Metadata Read(Luks2Json root, long areaSize, long fileLength)
    {
        var config = root.Object("config");
        var jsonSize = config.Size("json_size");
        if (jsonSize != areaSize - Luks2BinaryHeader.Length)
        {
            throw Luks2Json.Corrupt($"{config.Path}.json_size", $"{jsonSize} does not match the header size {areaSize}");
        }

        var keyslotsSize = config.Size("keyslots_size");
        if (keyslotsSize % 4096 != 0)
        {
            throw Luks2Json.Corrupt($"{config.Path}.keyslots_size", $"{keyslotsSize} is not a multiple of 4096");
        }

        // The key slots area follows both headers.
        var keyslotsStart = 2 * areaSize;
        if (keyslotsSize > fileLength - keyslotsStart)
        {
            throw Luks2Json.Corrupt($"{config.Path}.keyslots_size", $"0x{keyslotsSize:x} from 0x{keyslotsStart:x} runs beyond the end of the file (0x{fileLength:x})");
        }

        var metadataEnd = keyslotsStart + keyslotsSize;

        var requirements = config.Has("requirements") && config.Object("requirements").Has("mandatory")
            ? config.Object("requirements").Strings("mandatory")
            : [];

        var keyslots = new List<Luks2Keyslot>();
        foreach (var (id, slot) in root.Numbered("keyslots", MaxId))
        {
            // Slots of other types (the reencryption slot) never hold a passphrase.
            if (slot.String("type") == "luks2")
            {
                keyslots.Add(Luks2Keyslot.Read(id, slot, keyslotsStart, metadataEnd));
            }
        }

        var segments = new List<Luks2Segment>();
        foreach (var (id, s) in root.Numbered("segments", MaxId))
        {
            var segment = Luks2Segment.Read(id, s);
            if (segment.Offset < metadataEnd || segment.Offset > fileLength || segment.Size > fileLength - segment.Offset)
            {
                throw Luks2Json.Corrupt(s.Path, $"at offset 0x{segment.Offset:x} overlaps the metadata (up to 0x{metadataEnd:x}) or lies beyond the end of the file (0x{fileLength:x})");
            }

            segments.Add(segment);
        }

        var digests = new List<Luks2Digest>();
        foreach (var (id, d) in root.Numbered("digests", MaxId))
        {
            digests.Add(Luks2Digest.Read(id, d));
        }

        return new Luks2Metadata
        {
            Keyslots = [.. keyslots.OrderBy(k => k.Id)],
            Segments = [.. segments.OrderBy(s => s.Id)],
            Digests = digests,
            Requirements = requirements,
        };
    }

    /// <summary>QEMU's QCryptoBlockInfoLUKS filled from LUKS2 fields: the data segment's cipher, its digest, the key slots.</summary>
    public JsonObject Describe(Luks2Segment segment, LuksCipherSpec spec, Luks2Digest digest, string uuid)
    {
        var slots = new JsonArray();
        foreach (var slot in Keyslots)
        {
            slots.Add((JsonNode)new JsonObject
            {
                ["active"] = true,
                ["iters"] = slot.Kdf.Iterations,
                ["key-offset"] = slot.AreaOffset,
                ["stripes"] = slot.Stripes,
            });
        }

        return LuksInfo.Describe(spec, digest.Hash, uuid, slots, segment.Offset, digest.Iterations);
    }
}
