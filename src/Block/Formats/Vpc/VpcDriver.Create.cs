using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Vpc;

internal sealed partial class VpcDriver : IImageCreator, IImageFileCreator
{
    /// <summary>qemu-img's options in the order its line prints them, and their blockdev-create names.</summary>
    private static readonly (CreateOption Option, string? QapiName)[] QemuImgOptions =
    [
        (new(CreateOption.Size, CreateOptionType.Size), "size"),
        (new("subformat", CreateOptionType.String), "subformat"),
        (new("force_size", CreateOptionType.Bool), "force-size"),
    ];

    public IReadOnlyList<CreateOption> CreateOptions { get; } = QemuImgOptions.Select(o => o.Option).ToArray();

    /// <summary>BlockdevCreateOptionsVpc: file (an existing node), size, subformat, force-size.</summary>
    public ValueTask CreateAsync(BlockGraph graph, OptionReader options) =>
        ImageCreation.FormatNodeAsync(graph, options, VpcCreateOptions.Read, VpcCreator.CreateAsync);

    /// <summary>
    /// qemu-img's way (vpc_co_create_opts): the options renamed and bound as blockdev-create's, and
    /// unless force_size is on the size silently rounded up to the nearest CHS geometry.
    /// </summary>
    public async ValueTask CreateFileAsync(BlockGraph graph, string fileName, JsonObject options)
    {
        var reader = new OptionReader(ImageCreation.RenameOptions(options, QemuImgOptions));
        var create = VpcCreateOptions.Read(reader);
        reader.EnsureAllConsumed();
        create = create with { Size = (create.Size + VpcFormat.SectorSize - 1) & ~(long)(VpcFormat.SectorSize - 1) };
        if (!create.ForceSize)
        {
            create = create with { Size = VpcGeometry.ForNewImage(create.Size, false).Sectors * VpcFormat.SectorSize };
        }

        await VpcCreator.CreateAsync(graph, fileName, create).ConfigureAwait(false);
    }
}
