using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Exports;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.Exports;

/// <summary>The export table with a type of the test's own: options, QEMU's errors, deletion and node handling.</summary>
public sealed class BlockExportTableTests
{
    private readonly BlockGraph _graph = new();
    private readonly FakeExportType _type = new();
    private readonly BlockExportTable _table;
    private readonly List<string> _deleted = new();
    private readonly TaskScheduler _ioThread = new ConcurrentExclusiveSchedulerPair().ExclusiveScheduler;

    public BlockExportTableTests()
    {
        _table = new BlockExportTable(_graph, id => id == "io0" ? _ioThread : throw BlockException.Invalid($"iothread \"{id}\" not found"));
        _table.Register(_type);
        _table.Deleted += e => _deleted.Add(e.Id);
        _graph.Insert(new MemoryNode("m", 65536));
        _graph.Insert(new MemoryNode("ro", 65536, readOnly: true));
    }

    private static JsonObject Options(string json) => (JsonObject)JsonNode.Parse(json)!;

    private async Task<string> AddFailsAsync(string json) =>
        (await Assert.ThrowsAsync<BlockException>(async () => await _table.AddAsync(Options(json)))).Message;

    [Fact]
    public async Task AddReadsCommonAndTypeOptions()
    {
        var export = await _table.AddAsync(Options("""{"type":"fake","id":"e","node-name":"m","writable":true,"iothread":"io0","color":"blue"}"""));
        var fake = Assert.IsType<FakeExport>(export);
        Assert.Equal(("e", "fake", "m", true, "blue"), (fake.Id, fake.Type, fake.Node.NodeName, fake.Writable, fake.Color));
        Assert.Same(export, _table.Find("e"));
        Assert.Same(export, Assert.Single(_table.All));
    }

    [Fact]
    public async Task AddRefusesWithQemuWording()
    {
        await _table.AddAsync(Options("""{"type":"fake","id":"e","node-name":"m"}"""));
        Assert.Equal("Block export id 'e' is already in use", await AddFailsAsync("""{"type":"fake","id":"e","node-name":"m"}"""));
        Assert.Equal("Parameter 'type' does not accept value 'nope'", await AddFailsAsync("""{"type":"nope","id":"x","node-name":"m"}"""));
        Assert.Equal("Export type 'vhost-user-blk' is not supported", await AddFailsAsync("""{"type":"vhost-user-blk","id":"x","node-name":"m"}"""));
        Assert.Equal("Parameter 'id' is missing", await AddFailsAsync("""{"type":"fake","node-name":"m"}"""));
        Assert.Equal("Parameter 'shape' is unexpected", await AddFailsAsync("""{"type":"fake","id":"x","node-name":"m","shape":"round"}"""));
        Assert.Equal("Cannot find device='' nor node-name='gone'", await AddFailsAsync("""{"type":"fake","id":"x","node-name":"gone"}"""));
        Assert.Equal("Cannot export read-only node as writable", await AddFailsAsync("""{"type":"fake","id":"x","node-name":"ro","writable":true}"""));
        Assert.Equal("iothread \"io9\" not found", await AddFailsAsync("""{"type":"fake","id":"x","node-name":"m","iothread":"io9"}"""));
        Assert.Equal("Fake export refuses this color", await AddFailsAsync("""{"type":"fake","id":"x","node-name":"m","color":"refused"}"""));
        Assert.Equal(["e"], _table.All.Select(e => e.Id));
    }

    [Fact]
    public async Task AnExportHoldsItsNodeUntilDeleted()
    {
        var node = _graph.Find("m");
        await _table.AddAsync(Options("""{"type":"fake","id":"e","node-name":"m"}"""));
        Assert.Equal(1, node.UserCount);
        await _table.DeleteAsync("e", hard: false);
        Assert.Equal(0, node.UserCount);
        Assert.Empty(_table.All);
        Assert.Equal(["e"], _deleted);
    }

    [Fact]
    public async Task AFailedCreationReleasesTheNode()
    {
        await AddFailsAsync("""{"type":"fake","id":"x","node-name":"m","color":"refused"}""");
        Assert.Equal(0, _graph.Find("m").UserCount);
    }

    [Fact]
    public async Task SafeDeleteRefusesWhileClientsAreConnectedAndHardDisconnects()
    {
        var export = (FakeExport)await _table.AddAsync(Options("""{"type":"fake","id":"e","node-name":"m"}"""));
        export.Clients = 2;
        var e = await Assert.ThrowsAsync<BlockException>(async () => await _table.DeleteAsync("e", hard: false));
        Assert.Equal("export 'e' still in use", e.Message);
        Assert.Equal("Use mode='hard' to force client disconnect", e.Hint);
        Assert.Empty(export.Shutdowns);
        Assert.False(export.ShuttingDown);

        await _table.DeleteAsync("e", hard: true);
        Assert.Equal([true], export.Shutdowns);
        Assert.Equal(["e"], _deleted);
        Assert.Equal("Export 'e' is not found", (await Assert.ThrowsAsync<BlockException>(async () => await _table.DeleteAsync("e", hard: true))).Message);
    }

    [Fact]
    public async Task AFailedShutdownKeepsTheExport()
    {
        var export = (FakeExport)await _table.AddAsync(Options("""{"type":"fake","id":"e","node-name":"m"}"""));
        export.FailShutdown = true;
        await Assert.ThrowsAsync<BlockException>(async () => await _table.DeleteAsync("e", hard: true));
        Assert.False(export.ShuttingDown);
        Assert.Same(export, _table.Find("e"));
        Assert.Empty(_deleted);
        Assert.Equal(1, _graph.Find("m").UserCount);
    }

    [Fact]
    public async Task DeleteAllTakesOnlyTheNamedTypeAndCloseAllRaisesNoEvent()
    {
        _table.Register(new FakeExportType("other"));
        await _table.AddAsync(Options("""{"type":"fake","id":"a","node-name":"m"}"""));
        await _table.AddAsync(Options("""{"type":"other","id":"b","node-name":"m"}"""));
        await _table.DeleteAllAsync("other");
        Assert.Equal(["a"], _table.All.Select(e => e.Id));
        Assert.Equal(["b"], _deleted);

        await _table.CloseAllAsync();
        Assert.Empty(_table.All);
        Assert.Equal(["b"], _deleted);
        Assert.Equal(0, _graph.Find("m").UserCount);
    }

    [Fact]
    public async Task ReplaceNodeMovesTheExportsOfThatNodeOnly()
    {
        _graph.Insert(new MemoryNode("top", 65536));
        await _table.AddAsync(Options("""{"type":"fake","id":"e","node-name":"m"}"""));
        await _table.AddAsync(Options("""{"type":"fake","id":"f","node-name":"ro"}"""));
        await _table.ReplaceNodeAsync(_graph.Find("m"), _graph.Find("top"));
        Assert.Equal(["top", "ro"], _table.All.Select(e => e.Node.NodeName));
        Assert.Equal(0, _graph.Find("m").UserCount);
        Assert.Equal(1, _graph.Find("top").UserCount);
    }
}
