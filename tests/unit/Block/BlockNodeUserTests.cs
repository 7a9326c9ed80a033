using ExportServer.Block.Core;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.Block;

public sealed class BlockNodeUserTests
{
    [Fact]
    public void UserCountIsParentsAndHeldHandles()
    {
        var node = new MemoryNode("m", 4096);
        var job = node.TakeUser("mirror job", BlockPermissions.ConsistentRead);
        Assert.Equal(1, node.UserCount);
        var root = new BlockRoot(node);
        Assert.Equal(2, node.UserCount);
        Assert.Same(job, Assert.Single(node.Users));

        job.Dispose();
        job.Dispose();
        Assert.Equal(1, node.UserCount);
        Assert.Empty(node.Users);
        GC.KeepAlive(root);
    }

    [Fact]
    public void AWritingHandleKeepsTheNodeFromBecomingReadOnly()
    {
        var node = new MemoryNode("m", 4096);
        using (node.TakeUser("reader", BlockPermissions.ConsistentRead))
        {
            Assert.False(node.HasWriteUser([]));
        }

        using (node.TakeUser("stream job", BlockPermissions.WriteUnchanged))
        {
            Assert.True(node.HasWriteUser([]));
        }

        Assert.False(node.HasWriteUser([]));
    }

    [Fact]
    public async Task AWritingExportRootCountsForTheNodeItForwardsToEvenAfterASwap()
    {
        var first = new MemoryNode("a", 4096);
        var second = new MemoryNode("b", 4096);
        var root = new BlockRoot(first);
        using var export = root.TakeUser("export 'e'", BlockPermissions.ConsistentRead | BlockPermissions.Write);
        Assert.True(first.HasWriteUser([]));

        await root.SwapAsync(second);
        Assert.False(first.HasWriteUser([]));
        Assert.True(second.HasWriteUser([]));

        var reader = new BlockRoot(first);
        using var readOnlyExport = reader.TakeUser("export 'r'", BlockPermissions.ConsistentRead);
        Assert.False(first.HasWriteUser([]));
    }
}
