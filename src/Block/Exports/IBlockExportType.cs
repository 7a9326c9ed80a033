using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Exports;

/// <summary>
/// An export type (QEMU's BlockExportDriver), registered in the <see cref="BlockExportTable"/>
/// under its QAPI name. Adding a type is a class of this kind and its registration; nothing else
/// names it.
/// </summary>
public interface IBlockExportType
{
    /// <summary>The value of the 'type' option.</summary>
    string Name { get; }

    /// <summary>
    /// Reads this type's own options (the table has read the common ones and refuses any left
    /// over) and returns what creates the export once the table has checked the common ones.
    /// Creation checks what only this type knows, and disposes the export if it cannot start.
    /// </summary>
    Func<BlockExportSettings, ValueTask<BlockExport>> ReadOptions(OptionReader options);
}
