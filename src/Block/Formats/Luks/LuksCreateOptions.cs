using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Luks;

/// <summary>Options of a new LUKS image (QAPI BlockdevCreateOptionsLUKS without the file node).</summary>
internal sealed record LuksCreateOptions
{
    /// <summary>QEMU's default PBKDF time per key slot, in milliseconds.</summary>
    public const long DefaultIterTime = 2000;

    public required long Size { get; init; }

    public required string KeySecret { get; init; }

    public required LuksCipherSpec Cipher { get; init; }

    public required LuksHash Hash { get; init; }

    public long IterTime { get; init; } = DefaultIterTime;

    /// <summary>off, metadata, falloc or full (the payload written as zeroes on disk, as QEMU's file preallocation does).</summary>
    public string Preallocation { get; init; } = "off";

    public static LuksCreateOptions Read(OptionReader r)
    {
        var size = r.GetSize("size") ?? throw BlockException.Invalid($"Parameter '{r.FullName("size")}' is missing");
        var secret = r.GetString("key-secret");
        var cipher = LuksCipherSpec.FromOptions(r.GetString("cipher-alg"), r.GetString("cipher-mode"), r.GetString("ivgen-alg"), r.GetString("ivgen-hash-alg"));
        var hash = LuksHash.Parse(r.GetString("hash-alg") ?? "sha256");
        var iterTime = r.GetInt("iter-time") ?? DefaultIterTime;
        if (iterTime <= 0)
        {
            throw BlockException.Invalid($"Parameter '{r.FullName("iter-time")}' expects a positive number of milliseconds");
        }

        var prealloc = r.GetString("preallocation") ?? "off";
        if (prealloc is not ("off" or "metadata" or "falloc" or "full"))
        {
            throw BlockException.Invalid($"Parameter '{r.FullName("preallocation")}' does not accept value '{prealloc}'");
        }

        return new LuksCreateOptions
        {
            Size = size,
            KeySecret = secret ?? throw BlockException.Invalid($"Parameter '{r.FullName("key-secret")}' is required for cipher"),
            Cipher = cipher,
            Hash = hash,
            IterTime = iterTime,
            Preallocation = prealloc,
        };
    }
}
