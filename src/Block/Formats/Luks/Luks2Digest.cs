using System.Globalization;
using System.Security.Cryptography;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// A LUKS2 digest of type "pbkdf2": the PBKDF2 of the volume key that the key slots and segments it
/// lists share, which tells a right passphrase (its key slot yields that key) from a wrong one.
/// </summary>
internal sealed record Luks2Digest(int Id, string[] Keyslots, string[] Segments, string Hash, long Iterations, byte[] Salt, byte[] Value)
{
    public static Luks2Digest Read(int id, Luks2Json digest)
    {
        var type = digest.String("type");
        if (type != "pbkdf2")
        {
            throw Luks2Json.Corrupt($"{digest.Path}.type", $"'{Luks2Json.Shorten(type)}' is not pbkdf2");
        }

        return new Luks2Digest(
            id, digest.Strings("keyslots"), digest.Strings("segments"), digest.String("hash"),
            digest.Number("iterations", 1, uint.MaxValue), digest.Base64("salt", 1, 64), digest.Base64("digest", 1, 64));
    }

    public bool Covers(Luks2Keyslot slot, Luks2Segment segment) =>
        Keyslots.Contains(slot.Id.ToString(CultureInfo.InvariantCulture))
        && Segments.Contains(segment.Id.ToString(CultureInfo.InvariantCulture));

    /// <summary>Whether <paramref name="key"/> is the volume key this digest was made of.</summary>
    public bool Matches(ReadOnlySpan<byte> key)
    {
        Span<byte> computed = stackalloc byte[Value.Length];
        LuksHash.Parse(Hash).Pbkdf2(key, Salt, Iterations, computed);
        return CryptographicOperations.FixedTimeEquals(computed, Value);
    }
}
