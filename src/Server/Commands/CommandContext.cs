using ExportServer.Block.Jobs;
using ExportServer.Block.Transactions;
using ExportServer.Server.Daemon;

namespace ExportServer.Server.Commands;

/// <summary>The state command handlers share: the daemon and the run-time tables QMP adds to it.</summary>
internal sealed record CommandContext(StorageDaemon Daemon, WriteThresholds Thresholds, JobRegistry Jobs)
{
    /// <summary>The daemon as transaction actions see it.</summary>
    public ITransactionContext Transactions => new DaemonTransactionContext(this);
}
