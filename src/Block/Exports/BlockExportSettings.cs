using ExportServer.Block.Core;

namespace ExportServer.Block.Exports;

/// <summary>
/// The options every export type shares (QAPI's BlockExportOptions base), already checked by the
/// export table: a free id, an existing node that is writable if the export is.
/// </summary>
/// <param name="Scheduler">The iothread the export's requests run on, when one was named.</param>
public sealed record BlockExportSettings(string Id, BlockNode Node, bool Writable, TaskScheduler? Scheduler);
