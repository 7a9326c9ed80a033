using ExportServer.Block.Core;

namespace ExportServer.Block.Jobs;

/// <summary>
/// A block job's filter node (filter-node-name) over a source node: entered in the graph under the
/// given name (an automatic "#block…" name when none is given, as QEMU names its implicit filters)
/// and put between the source and its users by <see cref="InsertAsync"/>, taken out again by
/// <see cref="RemoveAsync"/> when the job ends. While it is in the graph its name is taken:
/// blockdev-add with it fails. The redirect moves the users of a node (the exports' roots) to
/// another node. With a <c>backingParent</c> (intermediate commit's overlay) the filter also takes
/// over that node's backing link to the source, as QEMU's commit_top does, and gives it back on
/// removal unless the job has moved the link meanwhile.
/// </summary>
public sealed class JobFilter
{
    private readonly BlockGraph _graph;
    private readonly BlockNode _source;
    private readonly Func<BlockNode, BlockNode, ValueTask> _redirect;
    private readonly string _driverName;
    private readonly string? _nodeName;
    private readonly BlockNode? _backingParent;
    private JobFilterNode? _node;

    /// <summary>Checks the name (valid, not taken yet); the node is made by <see cref="InsertAsync"/>.</summary>
    public JobFilter(
        BlockGraph graph, BlockNode source, string driverName, string? nodeName, Func<BlockNode, BlockNode, ValueTask> redirect, BlockNode? backingParent = null)
    {
        if (nodeName is not null)
        {
            // QEMU opens copy-on-read and copy-before-write as ordinary drivers, whose errors it
            // reports as "Could not create node: …"; mirror_top and commit_top it makes directly.
            var prefix = driverName is "copy-on-read" or "copy-before-write" ? "Could not create node: " : string.Empty;
            try
            {
                BlockGraph.ValidateNodeName(nodeName);
            }
            catch (BlockException e)
            {
                throw BlockException.Invalid(prefix + e.Message);
            }

            if (graph.TryFind(nodeName) is not null)
            {
                throw BlockException.Invalid($"{prefix}Duplicate nodes with node-name='{nodeName}'");
            }
        }

        _graph = graph;
        _source = source;
        _redirect = redirect;
        _driverName = driverName;
        _nodeName = nodeName;
        _backingParent = backingParent;
    }

    /// <summary>The filter node, once inserted; the source's users are on it while the job runs.</summary>
    public BlockNode Node => _node ?? throw new InvalidOperationException("the job's filter is not in the graph");

    /// <summary>
    /// Makes the filter and enters it in the graph (failing on a taken name), then moves the source's
    /// users onto it; if that fails, the graph is left as it was.
    /// </summary>
    public async ValueTask InsertAsync()
    {
        var node = new JobFilterNode(_nodeName ?? _graph.NewAutoName(), _driverName, _source);
        try
        {
            _graph.Insert(node);
        }
        catch
        {
            await node.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        _node = node;
        try
        {
            // The users move in one drained section: none of their requests reaches the source meanwhile.
            using (await _source.BeginDrainedSectionAsync().ConfigureAwait(false))
            {
                await _redirect(_source, node).ConfigureAwait(false);
                if (_backingParent is { } parent && ReferenceEquals(parent.BackingChild?.Node, _source))
                {
                    await parent.SetBackingAsync(node).ConfigureAwait(false);
                }
            }
        }
        catch
        {
            // Half inserted: put back what moved and take the filter out again.
            await RemoveAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Moves the filter's users (those a pivot has not moved elsewhere) back to the source, then takes
    /// the filter out of the graph and closes it. The source is held meanwhile so that closing the
    /// filter never closes it as an orphan. Runs once; later calls do nothing.
    /// </summary>
    public async ValueTask RemoveAsync()
    {
        if (_node is not { } node)
        {
            return;
        }

        _node = null;
        using (await node.BeginDrainedSectionAsync().ConfigureAwait(false))
        {
            if (_backingParent is { } parent && ReferenceEquals(parent.BackingChild?.Node, node))
            {
                await parent.SetBackingAsync(_source).ConfigureAwait(false);
            }

            await _redirect(node, _source).ConfigureAwait(false);
        }

        using (_source.TakeUser("job filter removal", BlockPermissions.None))
        {
            await _graph.RemoveAsync(node.NodeName).ConfigureAwait(false);
        }
    }
}
