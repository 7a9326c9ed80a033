using System.Security.Cryptography;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Luks;

/// <summary>A hash a LUKS header may name (its hash spec, an ESSIV hash): PBKDF2 with it, and one-shot digests for the splitter.</summary>
internal sealed class LuksHash
{
    private LuksHash(string name, HashAlgorithmName algorithm, int length)
    {
        Name = name;
        Algorithm = algorithm;
        Length = length;
    }

    public static LuksHash Sha1 { get; } = new("sha1", HashAlgorithmName.SHA1, 20);

    public static LuksHash Sha256 { get; } = new("sha256", HashAlgorithmName.SHA256, 32);

    public static LuksHash Sha384 { get; } = new("sha384", HashAlgorithmName.SHA384, 48);

    public static LuksHash Sha512 { get; } = new("sha512", HashAlgorithmName.SHA512, 64);

    public string Name { get; }

    public HashAlgorithmName Algorithm { get; }

    /// <summary>The digest length in bytes.</summary>
    public int Length { get; }

    /// <summary>The hash of that name, or QEMU's error for one it does not know.</summary>
    public static LuksHash Parse(string name) => TryParse(name) ?? throw BlockException.Invalid($"Hash algorithm '{name}' not supported");

    public static LuksHash? TryParse(string name) => name switch
    {
        "sha1" => Sha1,
        "sha256" => Sha256,
        "sha384" => Sha384,
        "sha512" => Sha512,
        _ => null,
    };

    public void Hash(ReadOnlySpan<byte> data, Span<byte> digest)
    {
        switch (Length)
        {
            case 20: SHA1.HashData(data, digest); break;
            case 32: SHA256.HashData(data, digest); break;
            case 48: SHA384.HashData(data, digest); break;
            default: SHA512.HashData(data, digest); break;
        }
    }

    public void Pbkdf2(ReadOnlySpan<byte> password, ReadOnlySpan<byte> salt, long iterations, Span<byte> output)
    {
        if (iterations is <= 0 or > int.MaxValue)
        {
            throw BlockException.Invalid($"luks: PBKDF2 iteration count {iterations} out of range");
        }

        Rfc2898DeriveBytes.Pbkdf2(password, salt, output, (int)iterations, Algorithm);
    }

    /// <summary>
    /// PBKDF2 iterations this machine runs in <paramref name="milliseconds"/> for an output of
    /// <paramref name="outputLength"/> bytes (QEMU's qcrypto_pbkdf2_count_iters, scaled).
    /// </summary>
    public ulong IterationsFor(int outputLength, long milliseconds)
    {
        Span<byte> salt = stackalloc byte[LuksFormat.SaltLength];
        Span<byte> output = stackalloc byte[outputLength];
        Span<byte> password = stackalloc byte[32];
        var iterations = 1 << 12;
        while (true)
        {
            var watch = System.Diagnostics.Stopwatch.StartNew();
            Rfc2898DeriveBytes.Pbkdf2(password, salt, output, iterations, Algorithm);
            var elapsed = watch.Elapsed.TotalMilliseconds;
            if (elapsed >= 50 || iterations >= 1 << 28)
            {
                return (ulong)Math.Max(1, iterations / Math.Max(elapsed, 0.001) * milliseconds);
            }

            iterations *= 4;
        }
    }
}
