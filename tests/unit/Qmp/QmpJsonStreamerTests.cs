using System.Text;
using ExportServer.Server.Qmp;
using Xunit;

namespace ExportServer.UnitTests.Qmp;

/// <summary>The monitor's JSON reader against what qemu-storage-daemon 7.2 answers for the same bytes.</summary>
public sealed class QmpJsonStreamerTests
{
    private static List<QmpInput> Feed(QmpJsonStreamer s, byte[] bytes)
    {
        var output = new List<QmpInput>();
        s.Feed(bytes, output);
        return output;
    }

    private static List<QmpInput> Feed(QmpJsonStreamer s, string text) => Feed(s, Encoding.UTF8.GetBytes(text));

    private static string Describe(QmpInput i) => i.Error ?? i.Value?.ToJsonString() ?? "null";

    [Fact]
    public void TwoValuesOnOneLineAndOneAcrossFeeds()
    {
        var s = new QmpJsonStreamer();
        var a = Feed(s, """{"a":1} {"b":"}{"} {"c":""");
        Assert.Equal(["""{"a":1}""", """{"b":"}{"}"""], a.Select(Describe));
        var b = Feed(s, "[2,\n3]}\n");
        Assert.Equal(["""{"c":[2,3]}"""], b.Select(Describe));
    }

    [Fact]
    public void StringsDecodeQemuEscapesAndSingleQuotes()
    {
        var s = new QmpJsonStreamer();
        var r = Feed(s, """{'a': "x\"}\'\u00e9\ud83d\ude00", "b": 'say "hi"'} """);
        Assert.Equal("x\"}'\u00e9\U0001F600", r[0].Value!["a"]!.GetValue<string>());
        Assert.Equal("say \"hi\"", r[0].Value!["b"]!.GetValue<string>());
    }

    [Fact]
    public void NumbersAreSignedThenUnsignedThenDouble()
    {
        var s = new QmpJsonStreamer();
        var r = Feed(s, "[-9223372036854775808, 18446744073709551615, 1.5e3, 0] ");
        Assert.Equal("[-9223372036854775808,18446744073709551615,1500,0]", Describe(r[0]));
    }

    [Theory]
    [InlineData("""{"execute": "query-version", "execute": "query-name"}""", "JSON parse error, duplicate key")]
    [InlineData("""{"execute": "query-name", "arguments": {"a": 1, "a": 2}}""", "JSON parse error, duplicate key")]
    [InlineData("""{"execute": tru}""", "JSON parse error, invalid keyword 'tru'")]
    [InlineData("""{"execute" "a"}""", "JSON parse error, missing : in object pair")]
    [InlineData("""{"execute": "a" "b"}""", "JSON parse error, expected separator in dict")]
    [InlineData("{1: 2}", "JSON parse error, key is not a string in object")]
    [InlineData("[1 2]", "JSON parse error, expected separator in list")]
    [InlineData("[1,]", "JSON parse error, expecting value")]
    [InlineData("""{"a":}""", "JSON parse error, expecting value")]
    [InlineData("{,}", "JSON parse error, expecting value")]
    [InlineData("}", "JSON parse error, expecting value")]
    [InlineData("""{"execute": "q\x"}""", "JSON parse error, invalid escape sequence in string")]
    [InlineData("""{"execute": "q\ud800"}""", @"JSON parse error, \ud800 is not a valid Unicode character")]
    [InlineData("01", "JSON parse error, stray '01'")]
    [InlineData("-x", "JSON parse error, stray '-x'")]
    [InlineData("1.5e\n", "JSON parse error, stray '1.5e\n'")]
    [InlineData("%d", "JSON parse error, stray '%'")]
    [InlineData("@", "JSON parse error, stray '@'")]
    public void SyntaxErrorsReadAsQemus(string text, string error)
    {
        var r = Feed(new QmpJsonStreamer(), text + "\n");
        Assert.Equal(error, r[0].Error);
    }

    [Fact]
    public void InvalidUtf8InAStringIsRefused()
    {
        var r = Feed(new QmpJsonStreamer(), [.. "{\"execute\": \"q"u8, 0x80, .. "\"}\n"u8]);
        Assert.Equal("JSON parse error, invalid UTF-8 sequence in string", Assert.Single(r).Error);
    }

    public static TheoryData<byte[], string[]> Unterminated => new()
    {
        { "{\"execute\": \"query-version\"\u0001"u8.ToArray(), ["JSON parse error, stray '\u0001'"] },
        { "[\"a\",\u0001"u8.ToArray(), ["JSON parse error, stray '\u0001'"] },
        { [.. Enumerable.Repeat((byte)'{', 2000), 1], ["JSON nesting depth limit exceeded", "JSON parse error, stray '\u0001'"] },
        { [.. "{\"execute\": \"query-version\""u8, 0xFF], ["JSON parse error, stray '\uFFFD'"] },
        { "\"ab\u0001cd\u0001"u8.ToArray(), ["JSON parse error, stray '\"ab\u0001'", "JSON parse error, stray '\u0001'"] },
        { "tru\u0001"u8.ToArray(), ["JSON parse error, invalid keyword 'tru'", "JSON parse error, stray '\u0001'"] },
        { [.. "{\"execute\": \"query-"u8, 0xFF, .. "\"}"u8], ["JSON parse error, stray '\"query-\uFFFD'", "JSON parse error, expecting value"] },
    };

    /// <summary>A control character or an impossible UTF-8 byte resets the reader, and the next command is read whole.</summary>
    [Theory]
    [MemberData(nameof(Unterminated))]
    public void ResynchronisesLikeQemuAfterUnterminatedInput(byte[] bad, string[] errors)
    {
        var s = new QmpJsonStreamer();
        var r = Feed(s, bad);
        r.AddRange(Feed(s, """{"execute":"query-name"}""" + "\n"));
        Assert.Equal([.. errors, """{"execute":"query-name"}"""], r.Select(Describe));
    }

    [Fact]
    public void NestingAtQemusLimitIsReadAndOneMoreIsRefused()
    {
        var ok = Feed(new QmpJsonStreamer(), new string('[', QmpJsonStreamer.MaxNesting) + new string(']', QmpJsonStreamer.MaxNesting));
        Assert.Null(Assert.Single(ok).Error);
        var deep = Feed(new QmpJsonStreamer(), new string('[', QmpJsonStreamer.MaxNesting + 1));
        Assert.Equal("JSON nesting depth limit exceeded", Assert.Single(deep).Error);
    }

    [Fact]
    public void AValueLargerThanQemusTokenLimitIsRefusedAndReadingGoesOn()
    {
        var s = new QmpJsonStreamer();
        var chunk = Encoding.ASCII.GetBytes(new string('x', 1 << 20));
        var r = Feed(s, "[\""u8.ToArray());
        for (var i = 0; i <= QmpJsonStreamer.MaxValueSize >> 20; i++)
        {
            r.AddRange(Feed(s, chunk));
        }

        r.AddRange(Feed(s, "\"]\n{\"a\":1}"u8.ToArray()));
        Assert.Equal(["JSON token size limit exceeded", "JSON parse error, expecting value", """{"a":1}"""], r.Select(Describe));
    }
}
