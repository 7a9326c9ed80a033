using ExportServer.Block.Core;

namespace ExportServer.Block.Secrets;

/// <summary>
/// Base64 as QEMU reads it in secrets: only the base64 alphabet and '=' are allowed, but missing
/// padding and a short final group are accepted (a final group of two or three characters gives one
/// or two bytes).
/// </summary>
public static class Base64
{
    public static byte[] Decode(ReadOnlySpan<byte> text)
    {
        if (text.IndexOf((byte)0) >= 0)
        {
            throw BlockException.Invalid("Base64 data contains embedded NUL characters");
        }

        var output = new List<byte>(text.Length * 3 / 4);
        int acc = 0, bits = 0;
        foreach (var c in text)
        {
            int v = c switch
            {
                >= (byte)'A' and <= (byte)'Z' => c - 'A',
                >= (byte)'a' and <= (byte)'z' => c - 'a' + 26,
                >= (byte)'0' and <= (byte)'9' => c - '0' + 52,
                (byte)'+' => 62,
                (byte)'/' => 63,
                (byte)'=' => -1,
                _ => throw BlockException.Invalid("Base64 data contains invalid characters"),
            };
            if (v < 0)
            {
                continue;
            }

            acc = (acc << 6) | v;
            bits += 6;
            if (bits >= 8)
            {
                bits -= 8;
                output.Add((byte)(acc >> bits));
                acc &= (1 << bits) - 1;
            }
        }

        return output.ToArray();
    }
}
