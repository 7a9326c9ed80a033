using ExportServer.Block.Core;
using ExportServer.Block.Jobs;
using ExportServer.Block.Jobs.Mirror;
using ExportServer.Server.Qmp;

namespace ExportServer.Server.Commands;

/// <summary>drive-mirror and blockdev-mirror (qapi/block-core.json).</summary>
internal static class MirrorJobCommands
{
    private static readonly QmpArg[] Shared =
    [
        QmpArg.Str("replaces", true),
        QmpArg.Enum("sync", false, "full", "top", "none"),
        QmpArg.Int("speed", true),
        QmpArg.Int("granularity", true),
        QmpArg.Int("buf-size", true),
        QmpArg.Enum("on-source-error", true, BlockJobCommands.ErrorPolicies),
        QmpArg.Enum("on-target-error", true, BlockJobCommands.ErrorPolicies),
        QmpArg.Str("filter-node-name", true),
        QmpArg.Enum("copy-mode", true, "background", "write-blocking"),
        QmpArg.Bool("auto-finalize"),
        QmpArg.Bool("auto-dismiss"),
    ];

    public static void Register(QmpDispatcher d, CommandContext ctx)
    {
        d.Add(new QmpCommand("blockdev-mirror", [QmpArg.Str("job-id", true), QmpArg.Str("device"), QmpArg.Str("target"), .. Shared], async call =>
        {
            var source = GraphCommands.Lookup(ctx.Daemon, call.RequireString("device"), null);
            var targetName = call.RequireString("target");
            var target = ctx.Daemon.Graph.TryFind(targetName) ?? throw QmpException.Generic($"Cannot find device='{targetName}' nor node-name='{targetName}'");
            await StartAsync(ctx, call, source, target).ConfigureAwait(false);
            return null;
        }));
        d.Add(new QmpCommand("drive-mirror", [
            QmpArg.Str("job-id", true), QmpArg.Str("device"), QmpArg.Str("target"), QmpArg.Str("format", true),
            QmpArg.Str("node-name", true), QmpArg.Enum("mode", true, "existing", "absolute-paths"), QmpArg.Bool("unmap"), .. Shared], async call =>
        {
            var source = GraphCommands.Lookup(ctx.Daemon, call.RequireString("device"), null);
            CheckGranularity(call);
            var sync = BlockJobCommands.Sync(call);
            var existing = call.GetString("mode") == "existing";
            var target = await JobTargets.OpenAsync(
                ctx, call.RequireString("target"), call.GetString("format") ?? (existing ? "raw" : source.DriverName), call.GetString("node-name"),
                existing, source.Length, sync == SyncMode.Top ? source.BackingChild?.Node : null).ConfigureAwait(false);
            try
            {
                await StartAsync(ctx, call, source, target).ConfigureAwait(false);
            }
            catch
            {
                await ctx.Daemon.Graph.RemoveAsync(target.NodeName).ConfigureAwait(false);
                throw;
            }

            return null;
        }));
    }

    private static async ValueTask StartAsync(CommandContext ctx, QmpCall call, BlockNode source, BlockNode target)
    {
        CheckGranularity(call);
        if (ReferenceEquals(source, target))
        {
            throw QmpException.Generic("Can't mirror node into itself");
        }

        var replaced = source;
        if (call.GetString("replaces") is { } replaces)
        {
            replaced = ctx.Daemon.Graph.TryFind(replaces) ?? throw QmpException.Generic($"Node '{replaces}' not found");
        }

        var bufSize = call.GetInt("buf-size") ?? 16 * 1024 * 1024;
        if (bufSize < 0)
        {
            throw QmpException.Generic("Parameter 'buf-size' expects a positive value");
        }

        await BlockJobCommands.StartFilteredAsync(ctx, call, source.NodeName, source, "mirror_top", filter =>
        {
            // The exports of the source use the filter while the job runs: the pivot moves them from there
            // (and those added to the replaced node since).
            var pivoted = ReferenceEquals(replaced, source) ? filter.Node : replaced;
            var settings = new MirrorSettings(
                BlockJobCommands.Sync(call),
                call.GetInt("granularity") ?? 64 * 1024,
                bufSize == 0 ? 16 * 1024 * 1024 : bufSize,
                BlockJobCommands.Policy(call, "on-source-error"),
                BlockJobCommands.Policy(call, "on-target-error"),
                Pivot: async () =>
                {
                    await ctx.Daemon.ReplaceExportedNodeAsync(pivoted, target).ConfigureAwait(false);
                    await ctx.Daemon.ReplaceExportedNodeAsync(replaced, target).ConfigureAwait(false);
                },
                WriteBlocking: call.GetString("copy-mode") == "write-blocking");
            return new MirrorJob(source, target, settings);
        }).ConfigureAwait(false);
    }

    private static void CheckGranularity(QmpCall call)
    {
        if (call.GetInt("granularity") is not { } g)
        {
            return;
        }

        if (g is < 512 or > 64 * 1024 * 1024)
        {
            throw QmpException.Generic("Parameter 'granularity' expects a value in range [512B, 64MB]");
        }

        if ((g & (g - 1)) != 0)
        {
            throw QmpException.Generic("Granularity must be power of 2");
        }
    }
}
