using System.Text.Json.Nodes;
using ExportServer.Block.Jobs;
using ExportServer.Block.Jobs.Backup;
using ExportServer.Block.Transactions;
using ExportServer.Server.Qmp;

namespace ExportServer.Server.Commands;

/// <summary>drive-backup and blockdev-backup (qapi/block-core.json); each is also a transaction action.</summary>
internal static class BackupJobCommands
{
    private static readonly QmpArg[] Shared =
    [
        QmpArg.Enum("sync", false, "full", "top", "none", "incremental", "bitmap"),
        QmpArg.Str("bitmap", true),
        QmpArg.Enum("bitmap-mode", true, "on-success", "never", "always"),
        QmpArg.Int("speed", true),
        QmpArg.Bool("compress"),
        QmpArg.Enum("on-source-error", true, BlockJobCommands.ErrorPolicies),
        QmpArg.Enum("on-target-error", true, BlockJobCommands.ErrorPolicies),
        QmpArg.Bool("auto-finalize"),
        QmpArg.Bool("auto-dismiss"),
        QmpArg.Str("filter-node-name", true),
        QmpArg.Obj("x-perf", true),
        QmpArg.Bool("discard-source"),
    ];

    /// <summary>x-perf's members (QAPI BackupPerf).</summary>
    private static readonly QmpArg[] PerfMembers =
        [QmpArg.Bool("use-copy-range"), QmpArg.Int("max-workers", true), QmpArg.Int("max-chunk", true)];

    /// <summary>blockdev-backup's arguments (the transaction action checks the same).</summary>
    public static readonly QmpArg[] BlockdevBackupArgs = [QmpArg.Str("job-id", true), QmpArg.Str("device"), QmpArg.Str("target"), .. Shared];

    /// <summary>drive-backup's arguments.</summary>
    public static readonly QmpArg[] DriveBackupArgs =
    [
        QmpArg.Str("job-id", true), QmpArg.Str("device"), QmpArg.Str("target"), QmpArg.Str("format", true),
        QmpArg.Enum("mode", true, "existing", "absolute-paths"), .. Shared,
    ];

    public static void Register(QmpDispatcher d, CommandContext ctx)
    {
        d.Add(new QmpCommand("blockdev-backup", BlockdevBackupArgs, call => RunAsync(BlockdevBackup(ctx, call))));
        d.Add(new QmpCommand("drive-backup", DriveBackupArgs, call => RunAsync(DriveBackup(ctx, call))));
    }

    /// <summary>blockdev-backup into an existing node.</summary>
    public static BackupAction BlockdevBackup(CommandContext ctx, QmpCall call) => new(ctx.Transactions, Request(call));

    /// <summary>drive-backup into a file that the action creates (unless mode is existing) and opens.</summary>
    public static BackupAction DriveBackup(CommandContext ctx, QmpCall call)
    {
        var request = Request(call);
        var existing = call.GetString("mode") == "existing";
        return new BackupAction(ctx.Transactions, request, source => JobTargets.OpenAsync(
            ctx, request.Target, call.GetString("format") ?? (existing ? "raw" : source.DriverName), null,
            existing, source.Length, request.Sync == SyncMode.Top ? source.BackingChild?.Node : null));
    }

    private static BackupRequest Request(QmpCall call) =>
        new(call.GetString("job-id"), call.RequireString("device"), call.RequireString("target"), BlockJobCommands.Sync(call))
        {
            Incremental = call.GetString("sync") == "incremental",
            Bitmap = call.GetString("bitmap"),
            BitmapMode = call.GetString("bitmap-mode") switch
            {
                null => null,
                "never" => BitmapSyncMode.Never,
                "always" => BitmapSyncMode.Always,
                _ => BitmapSyncMode.OnSuccess,
            },
            Compress = call.GetBool("compress", false),
            OnSourceError = BlockJobCommands.Policy(call, "on-source-error"),
            OnTargetError = BlockJobCommands.Policy(call, "on-target-error"),
            FilterNodeName = call.GetString("filter-node-name"),
            AutoFinalize = call.GetBool("auto-finalize", true),
            AutoDismiss = call.GetBool("auto-dismiss", true),
            Speed = call.GetInt("speed") ?? 0,
            Perf = Perf(call),
            DiscardSource = call.GetBool("discard-source", false),
        };

    /// <summary>x-perf, its members checked as the rest of the arguments; the values are the job's to check.</summary>
    private static BackupPerf? Perf(QmpCall call)
    {
        if (call.Arguments["x-perf"] is not JsonObject perf)
        {
            return null;
        }

        QmpArguments.Check(perf, PerfMembers, boxed: false, "x-perf.");
        return new BackupPerf(perf["max-workers"]?.GetValue<long>(), perf["max-chunk"]?.GetValue<long>());
    }

    private static async ValueTask<JsonNode?> RunAsync(BackupAction action)
    {
        await Transaction.RunAsync([action]).ConfigureAwait(false);
        return null;
    }
}
