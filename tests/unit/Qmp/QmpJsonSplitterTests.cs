using ExportServer.Server.Qmp;
using Xunit;

namespace ExportServer.UnitTests.Qmp;

public sealed class QmpJsonSplitterTests
{
    private static List<QmpInput> Feed(QmpJsonSplitter s, string text)
    {
        var output = new List<QmpInput>();
        s.Feed(text, output);
        return output;
    }

    [Fact]
    public void TwoValuesOnOneLineAndOneAcrossFeeds()
    {
        var s = new QmpJsonSplitter();
        var a = Feed(s, """{"a":1} {"b":"}{"} {"c":""");
        Assert.Equal(["""{"a":1}""", """{"b":"}{"}"""], a.Select(i => i.Json));
        var b = Feed(s, "[2,\n3]}\n");
        Assert.Equal(["{\"c\":[2,\n3]}"], b.Select(i => i.Json));
    }

    [Fact]
    public void EscapedQuoteStaysInsideTheString()
    {
        var s = new QmpJsonSplitter();
        Assert.Equal(["""{"a":"x\"}"}"""], Feed(s, """{"a":"x\"}"}""").Select(i => i.Json));
    }

    [Fact]
    public void StrayCloseIsAnErrorAndTheStreamRecovers()
    {
        var s = new QmpJsonSplitter();
        var r = Feed(s, "} {\"a\":1} \"s\" 12 ");
        Assert.Equal("JSON parse error, expecting value", r[0].Error);
        Assert.Equal(["""{"a":1}""", "\"s\"", "12"], r.Skip(1).Select(i => i.Json));
    }

    [Fact]
    public void NestingDeeperThanQemuAllowsIsRefused()
    {
        var s = new QmpJsonSplitter();
        var r = Feed(s, new string('[', QmpJsonSplitter.MaxNesting + 1));
        Assert.Equal("JSON parse error, nesting too deep", Assert.Single(r).Error);
    }
}
