using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// AES instances holding one key, lent to one request at a time: the platform's one-shot ECB and CBC
/// calls run on AES-NI through the system's crypto library, and an instance is not shared between threads.
/// </summary>
internal sealed class AesPool : IDisposable
{
    private readonly byte[] _key;
    private readonly ConcurrentBag<Aes> _free = [];

    public AesPool(ReadOnlySpan<byte> key) => _key = key.ToArray();

    public Aes Rent()
    {
        if (_free.TryTake(out var aes))
        {
            return aes;
        }

        aes = Aes.Create();
        aes.Key = _key;
        return aes;
    }

    public void Return(Aes aes) => _free.Add(aes);

    /// <summary>One ECB pass over whole blocks (no padding); <paramref name="output"/> must not overlap <paramref name="input"/>.</summary>
    public void Ecb(ReadOnlySpan<byte> input, Span<byte> output, bool encrypt)
    {
        var aes = Rent();
        try
        {
            if (encrypt)
            {
                aes.EncryptEcb(input, output, PaddingMode.None);
            }
            else
            {
                aes.DecryptEcb(input, output, PaddingMode.None);
            }
        }
        finally
        {
            Return(aes);
        }
    }

    public void Dispose()
    {
        CryptographicOperations.ZeroMemory(_key);
        while (_free.TryTake(out var aes))
        {
            aes.Dispose();
        }
    }
}
