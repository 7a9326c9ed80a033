using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Luks;

/// <summary>The block cipher mode of a LUKS payload.</summary>
internal enum LuksCipherMode
{
    Ecb,
    Cbc,
    Xts,
}

/// <summary>How each sector's initialisation vector is made from its number.</summary>
internal enum LuksIvGen
{
    None,
    Plain,
    Plain64,
    Essiv,
}

/// <summary>
/// A cipher as a LUKS header names it ("aes" and "xts-plain64", "cbc-essiv:sha256") with the key
/// length, and as QEMU's options name it (cipher-alg aes-256, cipher-mode xts, ivgen-alg plain64,
/// ivgen-hash-alg sha256). Only AES is offered: it is the cipher the platform provides.
/// </summary>
internal sealed record LuksCipherSpec(int AesKeyBytes, LuksCipherMode Mode, LuksIvGen IvGen, LuksHash? IvHash)
{
    /// <summary>The master key length: two AES keys for XTS.</summary>
    public int KeyBytes => Mode == LuksCipherMode.Xts ? AesKeyBytes * 2 : AesKeyBytes;

    public string CipherAlg => $"aes-{AesKeyBytes * 8}";

    public string HeaderCipherName => "aes";

    public string HeaderCipherMode => Mode switch
    {
        LuksCipherMode.Ecb => "ecb",
        _ => $"{ModeName}-{IvGenName}{(IvGen == LuksIvGen.Essiv ? ":" + IvHash!.Name : string.Empty)}",
    };

    public string ModeName => Mode.ToString().ToLowerInvariant();

    public string IvGenName => IvGen.ToString().ToLowerInvariant();

    /// <summary>Reads a header's cipher name and mode (QEMU's qcrypto_block_luks_parse_cipher_alg and friends).</summary>
    public static LuksCipherSpec FromHeader(string cipherName, string cipherMode, int keyBytes)
    {
        var dash = cipherMode.IndexOf('-', StringComparison.Ordinal);
        var modeName = dash < 0 ? cipherMode : cipherMode[..dash];
        var mode = ParseMode(modeName);
        var aesBytes = mode == LuksCipherMode.Xts ? keyBytes / 2 : keyBytes;
        if (cipherName != "aes")
        {
            throw BlockException.Invalid($"Unsupported cipher name '{cipherName}'");
        }

        if (aesBytes is not (16 or 24 or 32) || (mode == LuksCipherMode.Xts && keyBytes % 2 != 0))
        {
            throw BlockException.Invalid($"Unknown cipher {cipherName} with key size {keyBytes}");
        }

        if (mode == LuksCipherMode.Ecb)
        {
            return new LuksCipherSpec(aesBytes, mode, LuksIvGen.None, null);
        }

        if (dash < 0)
        {
            throw BlockException.Invalid($"Missing IV generator for cipher mode '{cipherMode}'");
        }

        var ivSpec = cipherMode[(dash + 1)..];
        var colon = ivSpec.IndexOf(':', StringComparison.Ordinal);
        var ivName = colon < 0 ? ivSpec : ivSpec[..colon];
        var ivGen = ParseIvGen(ivName);
        LuksHash? ivHash = null;
        if (ivGen == LuksIvGen.Essiv)
        {
            if (colon < 0)
            {
                throw BlockException.Invalid("Missing IV generator hash specification");
            }

            ivHash = LuksHash.Parse(ivSpec[(colon + 1)..]);
            CheckEssivHash(ivHash);
        }

        return new LuksCipherSpec(aesBytes, mode, ivGen, ivHash);
    }

    /// <summary>A LUKS2 "encryption" field: the cipher name and the mode in one string ("aes-xts-plain64").</summary>
    public static LuksCipherSpec FromLuks2(string encryption, int keyBytes)
    {
        var dash = encryption.IndexOf('-', StringComparison.Ordinal);
        return dash < 0 || encryption.Length > 64
            ? throw BlockException.Invalid($"Unsupported cipher '{Luks2Json.Shorten(encryption)}'")
            : FromHeader(encryption[..dash], encryption[(dash + 1)..], keyBytes);
    }

    /// <summary>From QEMU's create options (defaults aes-256, xts, plain64; ESSIV's hash defaults to sha256).</summary>
    public static LuksCipherSpec FromOptions(string? cipherAlg, string? cipherMode, string? ivgenAlg, string? ivgenHashAlg)
    {
        var aesBytes = (cipherAlg ?? "aes-256") switch
        {
            "aes-128" => 16,
            "aes-192" => 24,
            "aes-256" => 32,
            var other => throw BlockException.Invalid($"Cipher algorithm '{other}' is not supported"),
        };
        var mode = ParseMode(cipherMode ?? "xts");
        var ivGen = mode == LuksCipherMode.Ecb && ivgenAlg is null ? LuksIvGen.None : ParseIvGen(ivgenAlg ?? "plain64");
        LuksHash? ivHash = null;
        if (ivGen == LuksIvGen.Essiv)
        {
            ivHash = LuksHash.Parse(ivgenHashAlg ?? "sha256");
            CheckEssivHash(ivHash);
        }
        else if (ivgenHashAlg is not null)
        {
            LuksHash.Parse(ivgenHashAlg);
        }

        return new LuksCipherSpec(aesBytes, mode, ivGen, ivHash);
    }

    private static LuksCipherMode ParseMode(string name) => name switch
    {
        "ecb" => LuksCipherMode.Ecb,
        "cbc" => LuksCipherMode.Cbc,
        "xts" => LuksCipherMode.Xts,
        _ => throw BlockException.Invalid($"Cipher mode '{name}' is not supported"),
    };

    private static LuksIvGen ParseIvGen(string name) => name switch
    {
        "plain" => LuksIvGen.Plain,
        "plain64" => LuksIvGen.Plain64,
        "essiv" => LuksIvGen.Essiv,
        _ => throw BlockException.Invalid($"IV generator '{name}' is not supported"),
    };

    /// <summary>ESSIV encrypts with an AES key the size of the digest, so the hash must give 16, 24 or 32 bytes.</summary>
    private static void CheckEssivHash(LuksHash hash)
    {
        if (hash.Length is not (16 or 24 or 32))
        {
            throw BlockException.Invalid($"No AES key size matches the {hash.Name} digest length {hash.Length} for the ESSIV generator");
        }
    }
}
