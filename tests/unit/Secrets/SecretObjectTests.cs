using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Secrets;
using Xunit;

namespace ExportServer.UnitTests.SecretObjects;

/// <summary>The secret object: its value as loaded from data or a file, decoded and decrypted, and how drivers look it up.</summary>
public sealed class SecretObjectTests
{
    private static void Add(NamedObjects objects, string id, JsonObject props) =>
        new SecretObjectType().Add(objects, id, new OptionReader(props));

    [Fact]
    public void InlineAndFileValuesAreKeptAsGiven()
    {
        var objects = new NamedObjects();
        Add(objects, "a", new JsonObject { ["data"] = "pässword" });
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(file, [0, 1, 2, 255]);
            Add(objects, "b", new JsonObject { ["file"] = file });
        }
        finally
        {
            File.Delete(file);
        }

        Assert.Equal("pässword", Secrets.LookupUtf8(objects, "a"));
        Assert.Equal(new byte[] { 0, 1, 2, 255 }, Secrets.Lookup(objects, "b"));
        var e = Assert.Throws<BlockException>(() => Secrets.LookupUtf8(objects, "b"));
        Assert.Equal("Data from secret b is not valid UTF-8", e.Message);
        Assert.Equal(Convert.ToBase64String([0, 1, 2, 255]), Secrets.LookupBase64(objects, "b"));
    }

    [Theory]
    [InlineData("YWJj", "abc")]
    [InlineData("YWJjZA==", "abcd")]
    [InlineData("YWJjZA", "abcd")]
    [InlineData("abc", "i\u00b7")]
    public void Base64IsDecodedAsQemuDoesWithOrWithoutPadding(string text, string expected)
    {
        var objects = new NamedObjects();
        Add(objects, "s", new JsonObject { ["data"] = text, ["format"] = "base64" });
        Assert.Equal(Encoding.Latin1.GetBytes(expected), Secrets.Lookup(objects, "s"));
    }

    [Theory]
    [InlineData("raw")]
    [InlineData("base64")]
    public void AValueEncryptedWithAnotherSecretIsDecrypted(string format)
    {
        var key = RandomNumberGenerator.GetBytes(32);
        var iv = RandomNumberGenerator.GetBytes(16);
        using var aes = Aes.Create();
        aes.Key = key;
        var cipher = aes.EncryptCbc(Encoding.UTF8.GetBytes("0123456789abcdef-and-more"), iv, PaddingMode.PKCS7);
        var objects = new NamedObjects();
        Add(objects, "k", new JsonObject { ["data"] = Convert.ToBase64String(key), ["format"] = "base64" });
        var data = format == "base64" ? Convert.ToBase64String(cipher) : Encoding.Latin1.GetString(cipher);
        if (format == "raw")
        {
            // Raw ciphertext passes through a file, as arbitrary bytes cannot go inline.
            var file = Path.GetTempFileName();
            File.WriteAllBytes(file, cipher);
            Add(objects, "s", new JsonObject { ["file"] = file, ["keyid"] = "k", ["iv"] = Convert.ToBase64String(iv) });
            File.Delete(file);
        }
        else
        {
            Add(objects, "s", new JsonObject { ["data"] = data, ["format"] = "base64", ["keyid"] = "k", ["iv"] = Convert.ToBase64String(iv) });
        }

        Assert.Equal("0123456789abcdef-and-more", Secrets.LookupUtf8(objects, "s"));
    }

    [Fact]
    public void LookupsNameTheMissingOrForeignObject()
    {
        var objects = new NamedObjects();
        objects.Add("g", new object());
        Add(objects, "empty", new JsonObject { ["data"] = string.Empty });
        Assert.Equal("No secret with id 'x'", Assert.Throws<BlockException>(() => Secrets.Lookup(objects, "x")).Message);
        Assert.Equal("Object with id 'g' is not a secret", Assert.Throws<BlockException>(() => Secrets.Lookup(objects, "g")).Message);
        Assert.Equal("Secret with id 'empty' has no data", Assert.Throws<BlockException>(() => Secrets.Lookup(objects, "empty")).Message);
    }

    [Fact]
    public void ASecretNeverPrintsItsValueAndCanBeDeleted()
    {
        var objects = new NamedObjects();
        Add(objects, "s", new JsonObject { ["data"] = "hunter2" });
        Assert.DoesNotContain("hunter2", objects.TryGet<Secret>("s")!.ToString(), StringComparison.Ordinal);
        var type = new SecretObjectType();
        Assert.False(type.TryDelete(objects, "other"));
        Assert.True(type.TryDelete(objects, "s"));
        Assert.False(objects.Contains("s"));
    }
}
