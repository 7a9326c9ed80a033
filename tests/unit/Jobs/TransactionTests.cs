using ExportServer.Block.Core;
using ExportServer.Block.Jobs;
using ExportServer.Block.Transactions;
using ExportServer.UnitTests.Qmp;
using ExportServer.UnitTests.Support;
using Xunit;

namespace ExportServer.UnitTests.Jobs;

/// <summary>
/// <see cref="Transaction"/> in QEMU's order (prepare each, then commit each, or abort the prepared
/// newest first; clean each at the end), and the block layer's actions run without a monitor.
/// </summary>
public sealed class TransactionTests
{
    [Fact]
    public async Task AllPreparedThenAllCommittedThenAllCleanedInOrder()
    {
        var log = new List<string>();
        await Transaction.RunAsync([new RecordingAction("a", log), new RecordingAction("b", log), new RecordingAction("c", log)]);
        Assert.Equal(
            ["prepare a", "prepare b", "prepare c", "commit a", "commit b", "commit c", "clean a", "clean b", "clean c"],
            log);
    }

    [Fact]
    public async Task AFailedPrepareAbortsItselfAndThoseBeforeItInReverseAndCleansThem()
    {
        var log = new List<string>();
        var e = await Assert.ThrowsAsync<BlockException>(async () => await Transaction.RunAsync(
            [new RecordingAction("a", log), new RecordingAction("b", log), new RecordingAction("c", log, failPrepare: true), new RecordingAction("d", log)]));
        Assert.Equal("c failed", e.Message);
        Assert.Equal(
            ["prepare a", "prepare b", "prepare c", "abort c", "abort b", "abort a", "clean a", "clean b", "clean c"],
            log);
    }

    [Fact]
    public async Task TheAbortActionRollsBackASnapshotAndABackupBeforeThem()
    {
        var (ctx, events, baseNode, overlay, _) = Graph();
        var e = await Assert.ThrowsAsync<BlockException>(async () => await Transaction.RunAsync(
        [
            new ExternalSnapshotAction(ctx, new ExternalSnapshotRequest(null, "base") { Overlay = "ov" }),
            new BackupAction(ctx, new BackupRequest("bk", "ov", "dst", SyncMode.Full)),
            new AbortAction(),
        ]));
        Assert.Equal("Transaction aborted using Abort action", e.Message);
        Assert.Null(ctx.Jobs.TryFind("bk"));
        Assert.Null(overlay.BackingChild);
        Assert.False(baseNode.IsReadOnly);
        Assert.Equal(["base", "ov", "dst"], ctx.Graph.Nodes.Select(n => n.NodeName));

        // Created in its prepare, the job ends unstarted: no end event, as QEMU's.
        Assert.Equal(["created", "aborting", "concluded", "null"], events.Log);
    }

    [Fact]
    public async Task ASnapshotAndABackupOfItsOverlayCommitTogether()
    {
        var (ctx, events, baseNode, overlay, target) = Graph();
        await Transaction.RunAsync(
        [
            new ExternalSnapshotAction(ctx, new ExternalSnapshotRequest(null, "base") { Overlay = "ov" }),
            new BackupAction(ctx, new BackupRequest(null, "ov", "dst", SyncMode.Full)),
        ]);
        Assert.Same(baseNode, overlay.BackingChild?.Node);
        Assert.True(baseNode.IsReadOnly);

        // The job id defaults to the source's node name.
        await events.Reached(JobStatus.Null).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Contains("ended:completed", events.Log);
        Assert.Equal(baseNode.Data, target.Data);
        Assert.Equal(["base", "ov", "dst"], ctx.Graph.Nodes.Select(n => n.NodeName));
    }

    [Fact]
    public async Task ActionsFindTheirNodesWhenPreparedSoALaterActionSeesAnEarlierOne()
    {
        var (ctx, _, _, _, _) = Graph();
        var e = await Assert.ThrowsAsync<BlockException>(async () => await Transaction.RunAsync(
        [
            new BackupAction(ctx, new BackupRequest(null, "base", "nowhere", SyncMode.Full)),
        ]));
        Assert.Equal("Cannot find device='nowhere' nor node-name='nowhere'", e.Message);
        Assert.Equal(
            "Block format 'memory' used by device 'base' does not support internal snapshots",
            (await Assert.ThrowsAsync<BlockException>(async () => await Transaction.RunAsync([new InternalSnapshotAction(ctx, "base", "s1")]))).Message);
    }

    /// <summary>A base with data, an empty overlay node not yet above it, and a backup target.</summary>
    private static (TestTransactionContext Ctx, RecordingJobEvents Events, MemoryNode Base, OverlayNode Overlay, MemoryNode Target) Graph()
    {
        var events = new RecordingJobEvents();
        var ctx = new TestTransactionContext(new JobRegistry(events));
        var data = new byte[128 * 1024];
        Random.Shared.NextBytes(data);
        var baseNode = new MemoryNode("base", data);
        var overlay = new OverlayNode("ov", data.Length);
        var target = new MemoryNode("dst", data.Length);
        ctx.Graph.Insert(baseNode);
        ctx.Graph.Insert(overlay);
        ctx.Graph.Insert(target);
        return (ctx, events, baseNode, overlay, target);
    }
}
