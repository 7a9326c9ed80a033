using System.Text;
using ExportServer.Block.Core;

namespace ExportServer.Block.Secrets;

/// <summary>How drivers and exports read a secret they are given by id (QEMU's qcrypto_secret_lookup family).</summary>
public static class Secrets
{
    /// <summary>The secret's bytes (a copy the caller clears), or QEMU's error for a missing, foreign or empty id.</summary>
    public static byte[] Lookup(NamedObjects objects, string id)
    {
        if (!objects.Contains(id))
        {
            throw BlockException.Invalid($"No secret with id '{id}'");
        }

        var secret = objects.TryGet<Secret>(id) ?? throw BlockException.Invalid($"Object with id '{id}' is not a secret");
        if (secret.Length == 0)
        {
            throw BlockException.Invalid($"Secret with id '{id}' has no data");
        }

        return secret.CopyData();
    }

    /// <summary>The secret as text (a password, a passphrase); refused if it is not UTF-8.</summary>
    public static string LookupUtf8(NamedObjects objects, string id)
    {
        var bytes = Lookup(objects, id);
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw BlockException.Invalid($"Data from secret {id} is not valid UTF-8");
        }
        finally
        {
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(bytes);
        }
    }

    /// <summary>The secret encoded as base64 (what librados takes as a key).</summary>
    public static string LookupBase64(NamedObjects objects, string id)
    {
        var bytes = Lookup(objects, id);
        try
        {
            return Convert.ToBase64String(bytes);
        }
        finally
        {
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(bytes);
        }
    }
}
