using System.Runtime.InteropServices;
using System.Security.Cryptography;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// How a LUKS2 key slot turns the passphrase into the key of its area: PBKDF2 with a hash and an
/// iteration count, or Argon2i / Argon2id with a time cost, a memory cost in KiB and a number of
/// lanes ("cpus"). Argon2 runs in libargon2; its costs are bounded before anything is allocated.
/// </summary>
internal sealed record Luks2Kdf(string Type, string? HashName, long Iterations, uint MemoryKiB, uint Cpus, byte[] Salt)
{
    /// <summary>cryptsetup's largest Argon2 memory cost (4 GiB), and the length of every LUKS2 key slot salt.</summary>
    public const uint MaxMemoryKiB = 4 * 1024 * 1024;

    public const int SaltLength = 32;

    /// <summary>Argon2's largest lane count (ARGON2_MAX_LANES).</summary>
    private const uint MaxLanes = 0xffffff;

    /// <summary>
    /// The most memory an Argon2 derivation may pass over (time × memory, in KiB): 1 TiB, some minutes of
    /// work and a hundred times what cryptsetup's defaults produce, so a damaged header cannot hold an open for hours.
    /// </summary>
    private const ulong MaxWorkKiB = 1UL << 30;

    public bool IsArgon2 => Type is "argon2i" or "argon2id";

    public static Luks2Kdf Read(Luks2Json kdf)
    {
        var type = kdf.String("type");
        var salt = kdf.Base64("salt", SaltLength, SaltLength);
        switch (type)
        {
            case "pbkdf2":
                return new Luks2Kdf(type, kdf.String("hash"), kdf.Number("iterations", 1, uint.MaxValue), 0, 0, salt);
            case "argon2i" or "argon2id":
                var time = kdf.Number("time", 1, uint.MaxValue);
                var memory = kdf.Number("memory", 8, MaxMemoryKiB);
                var cpus = kdf.Number("cpus", 1, MaxLanes);
                if (memory < 8 * cpus)
                {
                    throw Luks2Json.Corrupt(kdf.Path, $"memory {memory} KiB is less than 8 KiB for each of its {cpus} lanes");
                }

                if ((ulong)time * (ulong)memory > MaxWorkKiB)
                {
                    throw Luks2Json.Corrupt(kdf.Path, $"time cost {time} with memory {memory} KiB exceeds the work limit of {MaxWorkKiB} KiB");
                }

                return new Luks2Kdf(type, null, time, (uint)memory, (uint)cpus, salt);
            default:
                throw Luks2Json.Corrupt($"{kdf.Path}.type", $"'{Luks2Json.Shorten(type)}' is not pbkdf2, argon2i or argon2id");
        }
    }

    /// <summary>Fills <paramref name="output"/> with the key derived from <paramref name="passphrase"/>.</summary>
    public void Derive(ReadOnlySpan<byte> passphrase, Span<byte> output)
    {
        if (!IsArgon2)
        {
            LuksHash.Parse(HashName!).Pbkdf2(passphrase, Salt, Iterations, output);
            return;
        }

        var physical = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if ((long)MemoryKiB * 1024 > physical)
        {
            throw new BlockException(Errno.ENOMEM, $"Not enough memory for keyslot key derivation ({Type} needs {MemoryKiB} KiB, the machine has {physical / 1024} KiB)");
        }

        Argon2(passphrase, output);
    }

    private unsafe void Argon2(ReadOnlySpan<byte> passphrase, Span<byte> output)
    {
        fixed (byte* pwd = passphrase)
        fixed (byte* salt = Salt)
        fixed (byte* o = output)
        {
            var context = new Argon2Native.Context
            {
                Out = o,
                OutLength = (uint)output.Length,
                Password = pwd,
                PasswordLength = (uint)passphrase.Length,
                Salt = salt,
                SaltLength = (uint)Salt.Length,
                TimeCost = (uint)Iterations,
                MemoryCostKiB = MemoryKiB,
                Lanes = Cpus,

                // The lanes decide the result; the threads only how many run at once.
                Threads = (uint)Math.Min(Cpus, (uint)Environment.ProcessorCount),
                Version = Argon2Native.Version13,
            };
            var rc = Argon2Native.Hash(&context, Type == "argon2id" ? Argon2Native.Type.Argon2id : Argon2Native.Type.Argon2i);
            if (rc != Argon2Native.Ok)
            {
                CryptographicOperations.ZeroMemory(output);
                var message = Marshal.PtrToStringUTF8(Argon2Native.ErrorMessage(rc)) ?? $"error {rc}";
                throw new BlockException(rc == -22 ? Errno.ENOMEM : Errno.EINVAL, $"luks: {Type} key derivation failed: {message}");
            }
        }
    }
}
