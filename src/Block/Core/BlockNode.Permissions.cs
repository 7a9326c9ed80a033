namespace ExportServer.Block.Core;

/// <summary>
/// Permissions as QEMU's graph has them: every user of a node — a handle (an export, a job, a
/// resize) or a parent edge — needs some <see cref="BlockPermissions"/> and shares others, and a
/// parent asks of its child what its own users need, as its <see cref="ChildUse"/> says. A handle
/// whose needs another user does not share, or who does not share what another needs, on its
/// node or on any node below it, is refused with QEMU's "Permission conflict" message.
/// </summary>
public abstract partial class BlockNode
{
    private static readonly (BlockPermissions Bit, string Name)[] PermissionNames =
    [
        (BlockPermissions.ConsistentRead, "consistent read"),
        (BlockPermissions.Write, "write"),
        (BlockPermissions.WriteUnchanged, "write unchanged"),
        (BlockPermissions.Resize, "resize"),
    ];

    /// <summary>What this node's users need together, and what all of them share.</summary>
    public (BlockPermissions Needs, BlockPermissions Shares) CumulativePermissions()
    {
        var needs = BlockPermissions.None;
        var shares = BlockPermissions.All;
        foreach (var use in Uses())
        {
            needs |= use.Needs;
            shares &= use.Shares;
        }

        return (needs, shares);
    }

    private static long s_useStamp;

    internal static long NextUseStamp() => Interlocked.Increment(ref s_useStamp);

    /// <summary>Every user of this node, newest first as QEMU lists a node's parents, with what it needs and shares and how QEMU names it.</summary>
    private IEnumerable<(BlockPermissions Needs, BlockPermissions Shares, string Who)> Uses()
    {
        var uses = new List<(long Stamp, BlockPermissions Needs, BlockPermissions Shares, string Who)>();
        foreach (var user in Users)
        {
            uses.Add((user.Stamp, user.Needs, user.Shares, UnnamedDevice(this)));
        }

        foreach (var edge in ParentEdges)
        {
            var (needs, shares) = edge.Parent.PermissionsOfChild(edge);
            var who = edge.Parent is BlockRoot
                ? UnnamedDevice(this)
                : $"node '{edge.Parent.NodeName}' (uses node '{NodeName}' as '{edge.Name}' child)";
            uses.Add((edge.Stamp, needs, shares, who));
        }

        return uses.OrderByDescending(u => u.Stamp).Select(u => (u.Needs, u.Shares, u.Who));
    }

    private static string UnnamedDevice(BlockNode node) => $"an unnamed block device (uses node '{node.NodeName}' as 'root' child)";

    /// <summary>What this node asks of <paramref name="edge"/>'s node (QEMU's bdrv_default_perms).</summary>
    private (BlockPermissions Needs, BlockPermissions Shares) PermissionsOfChild(BlockChild edge)
    {
        var (needs, shares) = CumulativePermissions();
        switch (edge.Use)
        {
            case ChildUse.Cow:
                var cowShares = (shares & BlockPermissions.Write) != 0 ? BlockPermissions.Write | BlockPermissions.Resize : BlockPermissions.None;
                return (needs & BlockPermissions.ConsistentRead, cowShares | BlockPermissions.ConsistentRead | BlockPermissions.WriteUnchanged);
            case ChildUse.Metadata:
                // A format touches its metadata even when nobody writes through it.
                needs |= BlockPermissions.ConsistentRead;
                if (!IsReadOnly)
                {
                    needs |= BlockPermissions.Write | BlockPermissions.Resize;
                }

                return (needs, shares & ~(BlockPermissions.Write | BlockPermissions.Resize));
            case ChildUse.Data:
                if ((needs & BlockPermissions.WriteUnchanged) != 0)
                {
                    needs |= BlockPermissions.Write;
                }

                if ((needs & BlockPermissions.Write) != 0)
                {
                    needs |= BlockPermissions.Resize;
                }

                return (needs, shares & ~BlockPermissions.Resize);
            default:
                return (needs, shares);
        }
    }

    /// <summary>The conflicts between the users of each of <paramref name="nodes"/> (not of the nodes below them), in QEMU's words.</summary>
    public static List<string> PermissionConflicts(IEnumerable<BlockNode> nodes)
    {
        var conflicts = new List<string>();
        foreach (var node in nodes)
        {
            node.AddOwnConflicts(conflicts);
        }

        return conflicts;
    }

    /// <summary>The conflicts between users of this node and of every node below it, in QEMU's words.</summary>
    private List<string> PermissionConflicts()
    {
        var conflicts = new List<string>();
        var seen = new HashSet<BlockNode>(ReferenceEqualityComparer.Instance);
        var pending = new Stack<BlockNode>();
        pending.Push(this);
        while (pending.TryPop(out var node))
        {
            if (!seen.Add(node))
            {
                continue;
            }

            node.AddOwnConflicts(conflicts);
            foreach (var child in node.Children)
            {
                pending.Push(child.Node);
            }
        }

        return conflicts;
    }

    /// <summary>In QEMU's order (bdrv_check_parents_compliance): for each user, newest first, what the others need that it does not share.</summary>
    private void AddOwnConflicts(List<string> conflicts)
    {
        var uses = Uses().ToArray();
        for (var a = 0; a < uses.Length; a++)
        {
            for (var b = 0; b < uses.Length; b++)
            {
                var both = uses[b].Needs & ~uses[a].Shares;
                if (a != b && both != BlockPermissions.None)
                {
                    conflicts.Add(
                        $"Permission conflict on node '{NodeName}': permissions '{Describe(both)}' are both required by {uses[b].Who} and unshared by {uses[a].Who}.");
                }
            }
        }
    }

    private static string Describe(BlockPermissions permissions) =>
        string.Join(", ", PermissionNames.Where(p => (permissions & p.Bit) != 0).Select(p => p.Name));
}
