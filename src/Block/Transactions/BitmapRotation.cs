using ExportServer.Block.Core;

namespace ExportServer.Block.Transactions;

/// <summary>
/// Checkpoint rotation over several disks at once: on each node the bitmap <c>current</c> stops
/// recording and a new enabled bitmap <c>next</c> starts (with current's granularity and
/// persistence), and each older bitmap named in <c>merge</c> is folded into <c>current</c> and
/// removed. The steps are the ordinary bitmap actions of one transaction: all happen, between two
/// guest writes, or none does and every bitmap is left as it was.
/// </summary>
public static class BitmapRotation
{
    public static List<ITransactionAction> Actions(
        BlockGraph graph, IReadOnlyList<string> nodes, string current, string next, IReadOnlyList<string> merge)
    {
        if (nodes.Count == 0)
        {
            throw BlockException.Invalid("Parameter 'nodes' must name at least one node");
        }

        var actions = new List<ITransactionAction>();
        foreach (var node in nodes)
        {
            // The new bitmap takes after the current one; a missing one fails here, before any change.
            var bs = graph.TryFind(node) ?? throw new BlockException(Errno.ENOENT, $"Cannot find device='{node}' nor node-name='{node}'");
            var bitmap = bs.FindDirtyBitmap(current) ?? throw new BlockException(Errno.ENOENT, $"Dirty bitmap '{current}' not found");
            if (!bitmap.Enabled)
            {
                throw BlockException.Invalid($"Bitmap '{current}' of node '{node}' is not recording: it is not the current checkpoint");
            }

            actions.Add(new BitmapAddAction(graph, node, next, bitmap.Granularity, bitmap.Persistent, disabled: false));
            actions.Add(new BitmapChangeAction(graph, node, current, BitmapChange.Disable));
            foreach (var older in merge)
            {
                actions.Add(new BitmapMergeAction(graph, node, current, [new Bitmaps.BitmapSource(null, older)]));
                actions.Add(new BitmapRemoveAction(graph, node, older));
            }
        }

        return actions;
    }
}
