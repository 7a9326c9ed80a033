using ExportServer.Block.Core;

namespace ExportServer.Block.Exports;

/// <summary>
/// The options every export type shares (QAPI's BlockExportOptions base), already checked by the
/// export table: a free id, an existing node that is writable if the export is.
/// </summary>
/// <param name="Scheduler">The iothread the export's requests run on, when one was named.</param>
/// <param name="WriteThrough">Every write goes down with FUA (QAPI's writethrough: the write cache off).</param>
public sealed record BlockExportSettings(string Id, BlockNode Node, bool Writable, TaskScheduler? Scheduler, bool WriteThrough = false);
