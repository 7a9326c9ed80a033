using System.Security.Cryptography;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Secrets;

/// <summary>
/// The <c>secret</c> object: a value given inline (<c>data</c>) or read from a file (<c>file</c>),
/// raw or base64 (<c>format</c>), optionally encrypted with another secret (<c>keyid</c>, a 32-byte
/// AES-256 key, and <c>iv</c>, base64 of 16 bytes; AES-256-CBC with PKCS#7 padding), as QEMU loads it.
/// </summary>
public sealed class SecretObjectType : IObjectType
{
    private static readonly Dictionary<string, bool> Formats = new(StringComparer.Ordinal) { ["raw"] = false, ["base64"] = true };

    public string QomType => "secret";

    public void Add(NamedObjects objects, string id, OptionReader options)
    {
        var data = options.GetString("data");
        var file = options.GetString("file");
        var base64 = ReadFormat(options);
        var keyId = options.GetString("keyid");
        var iv = options.GetString("iv");
        if (options.Has("loaded"))
        {
            throw BlockException.Invalid("Property 'secret.loaded' is not writable");
        }

        options.EnsureAllConsumed();
        objects.Add(id, new Secret(id, Decode(objects, Load(data, file), base64, keyId, iv)));
    }

    /// <summary>What every kind of secret does with the bytes it loaded: base64 decoding, then decryption with another secret.</summary>
    internal static byte[] Decode(NamedObjects objects, byte[] input, bool base64, string? keyId, string? iv) =>
        keyId is not null ? Decrypt(objects, keyId, iv, base64 ? Base64.Decode(input) : input)
        : base64 ? Base64.Decode(input)
        : input;

    /// <summary>format=raw|base64 as QEMU's secret objects take it.</summary>
    internal static bool ReadFormat(OptionReader options) => options.GetEnum("format", Formats) ?? false;

    public bool TryDelete(NamedObjects objects, string id)
    {
        if (objects.TryGet<Secret>(id) is null)
        {
            return false;
        }

        objects.Remove(id);
        return true;
    }

    private static byte[] Load(string? data, string? file)
    {
        if (data is not null && file is not null)
        {
            throw BlockException.Invalid("'file' and 'data' are mutually exclusive");
        }

        if (data is not null)
        {
            return System.Text.Encoding.UTF8.GetBytes(data);
        }

        if (file is null)
        {
            throw BlockException.Invalid("Either 'file' or 'data' must be provided");
        }

        try
        {
            return File.ReadAllBytes(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw BlockException.Invalid($"Unable to read {file}: Failed to open file “{file}”: {BlockException.Reason(e)}");
        }
    }

    private static byte[] Decrypt(NamedObjects objects, string keyId, string? iv, byte[] cipherText)
    {
        var key = Secrets.Lookup(objects, keyId);
        try
        {
            if (key.Length != 32)
            {
                throw BlockException.Invalid("Key should be 32 bytes in length");
            }

            if (iv is null)
            {
                throw BlockException.Invalid("IV is required to decrypt secret");
            }

            var ivBytes = Base64.Decode(System.Text.Encoding.UTF8.GetBytes(iv));
            if (ivBytes.Length != 16)
            {
                throw BlockException.Invalid($"IV should be 16 bytes in length not {ivBytes.Length}");
            }

            using var aes = Aes.Create();
            aes.Key = key;
            var plain = aes.DecryptCbc(cipherText, ivBytes, PaddingMode.None);
            var pad = plain.Length == 0 ? 0 : plain[^1];
            if (plain.Length == 0 || pad > 16 || pad > plain.Length)
            {
                CryptographicOperations.ZeroMemory(plain);
                throw BlockException.Invalid($"Incorrect number of padding bytes ({pad}) found on decrypted data");
            }

            var value = plain.AsSpan(0, plain.Length - pad).ToArray();
            CryptographicOperations.ZeroMemory(plain);
            return value;
        }
        catch (CryptographicException e)
        {
            throw BlockException.Invalid($"Failed to decrypt secret: {e.Message}");
        }
        finally
        {
            CryptographicOperations.ZeroMemory(key);
        }
    }
}
