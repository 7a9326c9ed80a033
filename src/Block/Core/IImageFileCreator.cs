using System.Text.Json.Nodes;

namespace ExportServer.Block.Core;

/// <summary>
/// Opt-in for formats that make a new image file from qemu-img's options (QEMU's create_opts and
/// bdrv_co_create_opts): <c>export-server create</c>, drive-mirror and drive-backup targets, and the
/// overlays of blockdev-snapshot-sync.
/// </summary>
public interface IImageFileCreator
{
    /// <summary>qemu-img's options of this format, in the order its "Formatting …" line shows them.</summary>
    IReadOnlyList<CreateOption> CreateOptions { get; }

    /// <summary>
    /// Creates <paramref name="fileName"/> (through its protocol) and formats it. <paramref name="options"/>
    /// holds qemu-img's names with typed values (see <see cref="ImageCreation.ParseOptions"/>); "size" is
    /// always there, in bytes.
    /// </summary>
    ValueTask CreateFileAsync(BlockGraph graph, string fileName, JsonObject options);
}
