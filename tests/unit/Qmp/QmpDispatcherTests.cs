using System.Text.Json.Nodes;
using Xunit;

namespace ExportServer.UnitTests.Qmp;

/// <summary>Request shape, command lookup and QEMU's argument checking, answered before anything runs.</summary>
public sealed class QmpDispatcherTests
{
    [Theory]
    [InlineData("[1,2]", "QMP input must be a JSON object")]
    [InlineData("\"str\"", "QMP input must be a JSON object")]
    [InlineData("{\"execute\":1}", "QMP input member 'execute' must be a string")]
    [InlineData("{\"execute\":\"query-version\",\"arguments\":[]}", "QMP input member 'arguments' must be an object")]
    [InlineData("{\"execute\":\"query-version\",\"extra\":1}", "QMP input member 'extra' is unexpected")]
    [InlineData("{\"id\":3}", "QMP input lacks member 'execute'")]
    [InlineData("{\"execute\":", "JSON parse error, expecting value")]
    public async Task BadRequestsAreGenericErrors(string request, string desc)
    {
        await using var h = new QmpHarness();
        var reply = await h.SendAsync(request);
        Assert.Equal("GenericError", reply["error"]!["class"]!.GetValue<string>());
        Assert.StartsWith(desc.Split(',')[0], reply["error"]!["desc"]!.GetValue<string>());
    }

    [Fact]
    public async Task IdIsEchoedOnSuccessAndError()
    {
        await using var h = new QmpHarness();
        var ok = await h.SendAsync("""{"execute":"query-version","id":{"a":[1]}}""");
        Assert.Equal("""{"a":[1]}""", ok["id"]!.ToJsonString());
        Assert.Equal(7, ok["return"]!["qemu"]!["major"]!.GetValue<int>());
        var bad = await h.SendAsync("""{"execute":"nope","id":"x"}""");
        Assert.Equal("x", bad["id"]!.GetValue<string>());
        Assert.Equal("CommandNotFound", bad["error"]!["class"]!.GetValue<string>());
        Assert.Equal("The command nope has not been found", bad["error"]!["desc"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("block-set-write-threshold", """{"write-threshold":1}""", "Parameter 'node-name' is missing")]
    [InlineData("block-set-write-threshold", """{"node-name":1,"write-threshold":1}""", "Invalid parameter type for 'node-name', expected: string")]
    [InlineData("block-set-write-threshold", """{"node-name":"a","write-threshold":"1"}""", "Invalid parameter type for 'write-threshold', expected: integer")]
    [InlineData("block-set-write-threshold", """{"node-name":"a","write-threshold":1,"x":2}""", "Parameter 'x' is unexpected")]
    [InlineData("query-named-block-nodes", """{"flat":"x"}""", "Invalid parameter type for 'flat', expected: boolean")]
    [InlineData("block-export-del", """{"id":"e","mode":"soft"}""", "Parameter 'mode' does not accept value 'soft'")]
    [InlineData("blockdev-add", """{"node-name":"n"}""", "Parameter 'driver' is missing")]
    [InlineData("blockdev-add", """{"driver":"memory","node-name":"n","bogus":1}""", "Parameter 'bogus' is unexpected")]
    [InlineData("blockdev-add", """{"driver":"memory","node-name":"n","size":"x"}""", "Parameter 'size' expects a non-negative number below 2^64")]
    [InlineData("transaction", """{"actions":[{"type":"abort"}]}""", "Parameter 'actions[0].data' is missing")]
    [InlineData("transaction", """{"actions":[{"type":"nope","data":{}}]}""", "Parameter 'actions[0].type' does not accept value 'nope'")]
    [InlineData("transaction", """{"actions":[{"type":"blockdev-snapshot","data":{"node":"a"}}]}""", "Parameter 'actions[0].data.overlay' is missing")]
    [InlineData("transaction", """{"actions":[],"properties":{"completion-mode":"x"}}""", "Parameter 'properties.completion-mode' does not accept value 'x'")]
    [InlineData("transaction", """{"actions":[{"type":"abort","data":{}}]}""", "Transaction aborted using Abort action")]
    [InlineData("blockdev-del", """{"node-name":"zz"}""", "Failed to find node with node-name='zz'")]
    [InlineData("block_resize", """{"node-name":"zz","size":1}""", "Cannot find device='' nor node-name='zz'")]
    [InlineData("job-dismiss", """{"id":"j"}""", "Job not found")]
    public async Task BadArgumentsAreRefusedWithQemuWording(string command, string args, string desc)
    {
        await using var h = new QmpHarness();
        var (cls, text) = await h.FailAsync(command, args);
        Assert.Equal("GenericError", cls);
        Assert.StartsWith(desc, text);
        Assert.Empty(h.Daemon.Graph.Nodes);
        await h.OkAsync("query-version");
    }

    [Fact]
    public async Task AliasAndCommandListAndSchemaComeFromOneTable()
    {
        await using var h = new QmpHarness();
        await h.OkAsync("blockdev-add", """{"driver":"memory","node-name":"m"}""");
        await h.OkAsync("x-blockdev-del", """{"node-name":"m"}""");
        Assert.Empty(h.Daemon.Graph.Nodes);
        var names = ((JsonArray)await h.OkAsync("query-commands")).Select(c => c!["name"]!.GetValue<string>()).ToHashSet();
        Assert.Contains("blockdev-snapshot-sync", names);
        Assert.Contains("x-blockdev-del", names);
        var schema = (JsonArray)await h.OkAsync("query-qmp-schema");
        var arg = schema.Single(e => e!["name"]!.GetValue<string>() == "q_obj_block_resize-arg")!;
        var members = ((JsonArray)arg["members"]!).Select(m => (m!["name"]!.GetValue<string>(), ((JsonObject)m).ContainsKey("default"))).ToList();
        Assert.Equal([("device", true), ("node-name", true), ("size", false)], members);
        Assert.All(names, n => Assert.Contains(schema, e => e!["name"]!.GetValue<string>() == n && e["meta-type"]!.GetValue<string>() == "command"));
    }
}
