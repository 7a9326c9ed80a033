using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// The crypto part of a new LUKS volume (QAPI QCryptoBlockCreateOptionsLUKS): the passphrase secret,
/// cipher, PBKDF2 hash and time. A luks image and a qcow2 image's encrypt.* options both read it.
/// </summary>
internal sealed record LuksCryptoOptions(string KeySecret, LuksCipherSpec Cipher, LuksHash Hash, long IterTime)
{
    /// <summary>QEMU's default PBKDF time per key slot, in milliseconds.</summary>
    public const long DefaultIterTime = 2000;

    public static LuksCryptoOptions Read(OptionReader r)
    {
        var secret = r.GetString("key-secret");
        var cipher = LuksCipherSpec.FromOptions(r.GetString("cipher-alg"), r.GetString("cipher-mode"), r.GetString("ivgen-alg"), r.GetString("ivgen-hash-alg"));
        var hash = LuksHash.Parse(r.GetString("hash-alg") ?? "sha256");
        var iterTime = ReadIterTime(r) ?? DefaultIterTime;
        return new LuksCryptoOptions(
            secret ?? throw BlockException.Invalid($"Parameter '{r.FullName("key-secret")}' is required for cipher"),
            cipher,
            hash,
            iterTime);
    }

    /// <summary>iter-time, when given: a positive number of milliseconds.</summary>
    public static long? ReadIterTime(OptionReader r)
    {
        var iterTime = r.GetInt("iter-time");
        if (iterTime <= 0)
        {
            throw BlockException.Invalid($"Parameter '{r.FullName("iter-time")}' expects a positive number of milliseconds");
        }

        return iterTime;
    }
}
