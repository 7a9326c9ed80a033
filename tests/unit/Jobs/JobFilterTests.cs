using ExportServer.Block.Core;
using ExportServer.Block.Jobs;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.Jobs;

/// <summary><see cref="JobFilter"/>: a forwarding node in the graph for the job's lifetime, its name reserved.</summary>
public sealed class JobFilterTests
{
    [Fact]
    public async Task InsertForwardsToTheSourceReservesTheNameAndRemoveUndoesIt()
    {
        var graph = new BlockGraph();
        var source = new MemoryNode("src", 64 * 1024);
        var moves = new List<(string From, string To)>();
        ValueTask Redirect(BlockNode from, BlockNode to)
        {
            moves.Add((from.NodeName, to.NodeName));
            return ValueTask.CompletedTask;
        }

        var filter = new JobFilter(graph, source, "mirror_top", "flt", Redirect);
        Assert.Null(graph.TryFind("flt"));
        await filter.InsertAsync();
        var node = graph.TryFind("flt");
        Assert.NotNull(node);
        Assert.Equal("mirror_top", node.DriverName);
        Assert.Equal(source.Length, node.Length);
        Assert.Equal([("src", "flt")], moves);
        Assert.Equal(1, source.UserCount);

        await node.WriteAsync(4096, new byte[] { 1, 2, 3 });
        Assert.Equal(2, source.Data[4097]);
        var duplicate = Assert.Throws<BlockException>(() => new JobFilter(graph, source, "mirror_top", "flt", Redirect));
        Assert.Equal("Duplicate nodes with node-name='flt'", duplicate.Message);
        Assert.Equal("Invalid node-name: '1bad'", Assert.Throws<BlockException>(() => new JobFilter(graph, source, "mirror_top", "1bad", Redirect)).Message);
        Assert.Equal(
            "Could not create node: Duplicate nodes with node-name='flt'",
            Assert.Throws<BlockException>(() => new JobFilter(graph, source, "copy-on-read", "flt", Redirect)).Message);

        await filter.RemoveAsync();
        await filter.RemoveAsync();
        Assert.Null(graph.TryFind("flt"));
        Assert.Equal([("src", "flt"), ("flt", "src")], moves);
        Assert.Equal(0, source.UserCount);
    }

    [Fact]
    public async Task WithoutANameTheFilterGetsAnAutomaticOne()
    {
        var graph = new BlockGraph();
        var filter = new JobFilter(graph, new MemoryNode("src", 4096), "copy-on-read", null, (_, _) => ValueTask.CompletedTask);
        await filter.InsertAsync();
        Assert.StartsWith("#block", filter.Node.NodeName);
        Assert.Same(filter.Node, graph.TryFind(filter.Node.NodeName));
    }
}
