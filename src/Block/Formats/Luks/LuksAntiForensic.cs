using System.Buffers.Binary;
using System.Security.Cryptography;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// The anti-forensic splitter of LUKS1: a key is stored as <c>stripes</c> blocks of which all are
/// needed to recover it, each block after the first mixed into the next through the hash ("diffuse").
/// </summary>
internal static class LuksAntiForensic
{
    /// <summary>Recovers the key from its split form (<paramref name="split"/>: key length × stripes bytes).</summary>
    public static void Merge(LuksHash hash, ReadOnlySpan<byte> split, int stripes, Span<byte> key)
    {
        var n = key.Length;
        var block = new byte[n];
        for (var i = 0; i < stripes - 1; i++)
        {
            Xor(block, split.Slice(i * n, n));
            Diffuse(hash, block);
        }

        for (var j = 0; j < n; j++)
        {
            key[j] = (byte)(block[j] ^ split[((stripes - 1) * n) + j]);
        }

        CryptographicOperations.ZeroMemory(block);
    }

    /// <summary>Splits <paramref name="key"/> into <paramref name="split"/> (key length × stripes bytes) with random stripes.</summary>
    public static void Split(LuksHash hash, ReadOnlySpan<byte> key, int stripes, Span<byte> split)
    {
        var n = key.Length;
        RandomNumberGenerator.Fill(split[..((stripes - 1) * n)]);
        var block = new byte[n];
        for (var i = 0; i < stripes - 1; i++)
        {
            Xor(block, split.Slice(i * n, n));
            Diffuse(hash, block);
        }

        for (var j = 0; j < n; j++)
        {
            split[((stripes - 1) * n) + j] = (byte)(block[j] ^ key[j]);
        }

        CryptographicOperations.ZeroMemory(block);
    }

    private static void Xor(Span<byte> into, ReadOnlySpan<byte> other)
    {
        for (var j = 0; j < into.Length; j++)
        {
            into[j] ^= other[j];
        }
    }

    /// <summary>Each digest-sized piece (and a short last one) replaced by the hash of its index (big-endian) and itself.</summary>
    private static void Diffuse(LuksHash hash, Span<byte> block)
    {
        var d = hash.Length;
        Span<byte> input = stackalloc byte[4 + 64];
        Span<byte> digest = stackalloc byte[64];
        var pieces = (block.Length + d - 1) / d;
        for (var i = 0; i < pieces; i++)
        {
            var piece = block.Slice(i * d, Math.Min(d, block.Length - (i * d)));
            BinaryPrimitives.WriteUInt32BigEndian(input, (uint)i);
            piece.CopyTo(input[4..]);
            hash.Hash(input[..(4 + piece.Length)], digest);
            digest[..piece.Length].CopyTo(piece);
        }
    }
}
