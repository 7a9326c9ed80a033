using ExportServer.Block.Jobs;
using ExportServer.Server.Qmp;

namespace ExportServer.Server.Commands;

/// <summary>drive-backup and blockdev-backup (qapi/block-core.json); each is also a transaction action.</summary>
internal static class BackupJobCommands
{
    private static readonly QmpArg[] Shared =
    [
        QmpArg.Enum("sync", false, "full", "top", "none"),
        QmpArg.Int("speed", true),
        QmpArg.Bool("compress"),
        QmpArg.Enum("on-source-error", true, BlockJobCommands.ErrorPolicies),
        QmpArg.Enum("on-target-error", true, BlockJobCommands.ErrorPolicies),
        QmpArg.Bool("auto-finalize"),
        QmpArg.Bool("auto-dismiss"),
        QmpArg.Str("filter-node-name", true),
        QmpArg.Obj("x-perf", true),
    ];

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
        d.Add(new QmpCommand("blockdev-backup", BlockdevBackupArgs, call => RunAsync(new JobBackupAction(ctx, call.Arguments, drive: false))));
        d.Add(new QmpCommand("drive-backup", DriveBackupArgs, call => RunAsync(new JobBackupAction(ctx, call.Arguments, drive: true))));
    }

    public static SyncMode Sync(QmpCall call) => call.RequireString("sync") switch
    {
        "full" => SyncMode.Full,
        "top" => SyncMode.Top,
        _ => SyncMode.None,
    };

    private static async ValueTask<System.Text.Json.Nodes.JsonNode?> RunAsync(JobBackupAction action)
    {
        await TransactionCommands.RunAsync([action]).ConfigureAwait(false);
        return null;
    }
}
