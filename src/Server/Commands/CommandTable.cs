using ExportServer.Server.Daemon;
using ExportServer.Server.Qmp;

namespace ExportServer.Server.Commands;

/// <summary>Every QMP command, grouped as QEMU's QAPI files group them.</summary>
internal static class CommandTable
{
    public static void Register(QmpDispatcher dispatcher, StorageDaemon daemon)
    {
        var context = new CommandContext(daemon, new WriteThresholds(daemon), daemon.Jobs);
        ControlCommands.Register(dispatcher, daemon);
        GraphCommands.Register(dispatcher, context);
        QueryCommands.Register(dispatcher, context);
        ExportCommands.Register(dispatcher, daemon);
        SnapshotCommands.Register(dispatcher, context);
        TransactionCommands.Register(dispatcher, context);
        BitmapCommands.Register(dispatcher, context);
        JobCommands.Register(dispatcher, context);
        BlockJobCommands.Register(dispatcher, context);
        MirrorJobCommands.Register(dispatcher, context);
        BackupJobCommands.Register(dispatcher, context);
        StreamJobCommands.Register(dispatcher, context);
        CommitJobCommands.Register(dispatcher, context);
    }
}
