using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Server.Daemon;

namespace ExportServer.Server.Commands;

/// <summary>
/// block-set-write-threshold: a write notifier per node that, on the first write reaching past the
/// threshold, emits BLOCK_WRITE_THRESHOLD and disarms itself (QEMU's one-shot semantics).
/// </summary>
internal sealed class WriteThresholds(StorageDaemon daemon)
{
    private readonly Dictionary<BlockNode, Armed> _armed = new();

    public long Get(BlockNode node)
    {
        lock (_armed)
        {
            return _armed.TryGetValue(node, out var a) ? a.Threshold : 0;
        }
    }

    /// <summary>Arms (or with 0 disarms) the threshold of <paramref name="node"/>.</summary>
    public void Set(BlockNode node, long threshold)
    {
        Disarm(node);
        if (threshold <= 0)
        {
            return;
        }

        var armed = new Armed(threshold);
        armed.Notifier = (n, offset, length) =>
        {
            var end = offset + length;
            if (end > threshold && Disarm(n, armed))
            {
                daemon.Emit("BLOCK_WRITE_THRESHOLD", new JsonObject
                {
                    ["node-name"] = n.NodeName,
                    ["amount-exceeded"] = end - threshold,
                    ["write-threshold"] = threshold,
                });
            }

            return ValueTask.CompletedTask;
        };
        lock (_armed)
        {
            _armed[node] = armed;
        }

        node.WriteNotifiers.Add(armed.Notifier);
    }

    private void Disarm(BlockNode node)
    {
        Armed? a;
        lock (_armed)
        {
            _armed.TryGetValue(node, out a);
        }

        if (a is not null)
        {
            Disarm(node, a);
        }
    }

    private bool Disarm(BlockNode node, Armed armed)
    {
        lock (_armed)
        {
            if (!_armed.TryGetValue(node, out var current) || current != armed)
            {
                return false;
            }

            _armed.Remove(node);
        }

        node.WriteNotifiers.Remove(armed.Notifier!);
        return true;
    }

    private sealed class Armed(long threshold)
    {
        public long Threshold { get; } = threshold;

        public WriteNotifier? Notifier { get; set; }
    }
}
