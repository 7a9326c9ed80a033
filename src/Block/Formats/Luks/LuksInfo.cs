using System.Text.Json.Nodes;

namespace ExportServer.Block.Formats.Luks;

/// <summary>QEMU's QCryptoBlockInfoLUKS, the format-specific data a luks node reports, for LUKS1 and LUKS2 alike.</summary>
internal static class LuksInfo
{
    public static JsonObject Describe(LuksCipherSpec spec, string hashAlg, string uuid, JsonArray slots, long payloadOffset, long masterKeyIters)
    {
        var data = new JsonObject
        {
            ["ivgen-alg"] = spec.IvGen == LuksIvGen.None ? null : spec.IvGenName,
            ["hash-alg"] = hashAlg,
            ["cipher-alg"] = spec.CipherAlg,
            ["uuid"] = uuid,
            ["cipher-mode"] = spec.ModeName,
            ["slots"] = slots,
            ["payload-offset"] = payloadOffset,
            ["master-key-iters"] = masterKeyIters,
        };
        if (spec.IvHash is { } ivHash)
        {
            data["ivgen-hash-alg"] = ivHash.Name;
        }

        if (spec.IvGen == LuksIvGen.None)
        {
            data.Remove("ivgen-alg");
        }

        return data;
    }
}
