using ExportServer.Block.Core;
using ExportServer.Block.Exports;
using ExportServer.Fuse;
using ExportServer.Nbd.Server;
using Microsoft.Extensions.Logging;

namespace ExportServer.Server.Daemon;

/// <summary>The export types this daemon offers: one line each.</summary>
internal static class ExportTypes
{
    public static void RegisterBuiltIn(BlockExportTable table, BlockGraph graph, NbdServerHost nbd, ILoggerFactory loggers)
    {
        table.Register(new NbdExportType(() => nbd.Server, graph));
        table.Register(new FuseExportType(loggers.CreateLogger("ExportServer.Fuse")));
    }
}
