using System.Text.Json.Nodes;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Raw;

/// <summary>
/// A raw image is its protocol's storage: qemu-img's create makes the file and nothing more, and
/// blockdev-create has no raw driver (as in QEMU, whose raw format has create_opts only).
/// </summary>
internal sealed partial class RawDriver : IImageFileCreator, IFormatProbe
{
    /// <summary>QEMU's raw_probe: anything could be raw, so every other format wins over it.</summary>
    private const int RawScore = 1;

    public IReadOnlyList<CreateOption> CreateOptions { get; } =
    [
        new(CreateOption.Size, CreateOptionType.Size),
        new(CreateOption.Preallocation, CreateOptionType.String),
    ];

    public int Probe(ReadOnlySpan<byte> head, string? fileName) => RawScore;

    public async ValueTask CreateFileAsync(BlockGraph graph, string fileName, JsonObject options)
    {
        var protocol = new JsonObject { ["size"] = ImageCreation.GetSize(options, CreateOption.Size) };
        if (options[CreateOption.Preallocation] is { } prealloc)
        {
            protocol["preallocation"] = prealloc.DeepClone();
        }

        await ImageCreation.CreateProtocolFileAsync(graph, fileName, protocol).ConfigureAwait(false);
    }
}
