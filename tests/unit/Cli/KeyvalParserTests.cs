using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Server.Cli;
using Xunit;

namespace ExportServer.UnitTests.Cli;

public sealed class KeyvalParserTests
{
    private static string Json(string text, string? implied = null) => KeyvalParser.Parse(text, implied).ToJsonString();

    [Fact]
    public void DottedKeysBuildNestedObjects() =>
        Assert.Equal("""{"driver":"qcow2","node-name":"n","file":{"driver":"file","filename":"x"}}""",
            Json("driver=qcow2,node-name=n,file.driver=file,file.filename=x"));

    [Fact]
    public void ImpliedFirstKey() =>
        Assert.Equal("""{"type":"nbd","id":"e"}""", Json("nbd,id=e", "type"));

    [Fact]
    public void DoubleCommaIsALiteralComma() =>
        Assert.Equal("""{"filename":"a,b","x":"1"}""", Json("filename=a,,b,x=1"));

    [Fact]
    public void LaterAssignmentWins() =>
        Assert.Equal("""{"a":"2"}""", Json("a=1,a=2"));

    [Fact]
    public void TrailingCommaAndEmptyValueAreAllowed() =>
        Assert.Equal("""{"a":"","b":"x"}""", Json("a=,b=x,"));

    [Theory]
    [InlineData("a \"quoted\" name")]
    [InlineData("C:\\dir\\file")]
    [InlineData("tab\tnew\nline\u0001end")]
    [InlineData("nön-ascii ✓ 𝄞")]
    [InlineData("")]
    public void EveryValueComesBackAsTheStringGiven(string value)
    {
        var node = KeyvalParser.Parse("filename=" + value.Replace(",", ",,", StringComparison.Ordinal))["filename"]!;
        Assert.Equal(System.Text.Json.JsonValueKind.String, node.GetValueKind());
        Assert.Equal(value, node.GetValue<string>());
        Assert.Equal(value, JsonNode.Parse(node.ToJsonString())!.GetValue<string>());
    }

    [Fact]
    public void NumericKeysBuildLists() =>
        Assert.Equal("""{"bitmaps":["b0","b1"]}""", Json("bitmaps.0=b0,bitmaps.1=b1"));

    [Theory]
    [InlineData("size=1G,size.x=2", "Parameters 'size.*' used inconsistently")]
    [InlineData("a.b=1,a=2", "Parameters 'a.*' used inconsistently")]
    [InlineData("foo", "Expected '=' after parameter 'foo'")]
    [InlineData("a=1,bad key=2", "Invalid parameter 'bad key'")]
    [InlineData("l.0=a,l.2=b", "Parameter 'l.1' missing")]
    public void ErrorsUseQemuWording(string text, string message)
    {
        var e = Assert.Throws<BlockException>(() => KeyvalParser.Parse(text));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void ImpliedKeyOnlyForTheFirstElement()
    {
        var e = Assert.Throws<BlockException>(() => KeyvalParser.Parse("nbd,other", "type"));
        Assert.Equal("Expected '=' after parameter 'other'", e.Message);
    }

    [Fact]
    public void CommandLineKeepsOrderAndParsesJson()
    {
        var cl = CommandLine.Parse(["--blockdev", "null-co,node-name=n", "--nbd-server={\"addr\":{\"type\":\"unix\",\"path\":\"/s\"}}", "--export", "nbd,id=e,node-name=n", "--pidfile", "/p"]);
        Assert.Equal([CliOptionKind.Blockdev, CliOptionKind.NbdServer, CliOptionKind.Export], cl.Options.Select(o => o.Kind));
        Assert.Equal("null-co", (string?)cl.Options[0].Value["driver"]);
        Assert.Equal("/s", (string?)((JsonObject)cl.Options[1].Value["addr"]!)["path"]);
        Assert.Equal("/p", cl.PidFile);
    }

    [Theory]
    [InlineData("--bogus", "unrecognized option '--bogus'")]
    [InlineData("--blockdev", "option '--blockdev' requires an argument")]
    public void CommandLineErrors(string arg, string message)
    {
        var e = Assert.Throws<CommandLineException>(() => CommandLine.Parse([arg]));
        Assert.Equal(message, e.Message);
    }
}
