using System.Buffers.Binary;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Vdi;

/// <summary>The "vdi" driver (VirtualBox images): option file only; creates dynamic and static images.</summary>
internal sealed class VdiDriver : IBlockDriver, IFormatProbe, IImageCreator, IImageFileCreator
{
    private const int SignatureOffset = 64;

    /// <summary>qemu-img's options in the order its line prints them; static becomes preallocation=metadata.</summary>
    private static readonly (CreateOption Option, string? QapiName)[] QemuImgOptions =
    [
        (new(CreateOption.Size, CreateOptionType.Size), "size"),
        (new("static", CreateOptionType.Bool, "off"), null),
    ];

    public static VdiDriver Instance { get; } = new();

    public string Name => "vdi";

    public IReadOnlyList<CreateOption> CreateOptions { get; } = QemuImgOptions.Select(o => o.Option).ToArray();

    /// <summary>The signature in a whole header, as QEMU's vdi_probe.</summary>
    public int Probe(ReadOnlySpan<byte> head, string? fileName) =>
        head.Length >= VdiFormat.HeaderSize && BinaryPrimitives.ReadUInt32LittleEndian(head[SignatureOffset..]) == VdiFormat.Signature ? 100 : 0;

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var file = await context.OpenFileChildAsync(options).ConfigureAwait(false);
        return await VdiNode.OpenAsync(context.NodeName, context.ReadOnly, file).ConfigureAwait(false);
    }

    /// <summary>BlockdevCreateOptionsVdi: file (an existing node), size, preallocation.</summary>
    public ValueTask CreateAsync(BlockGraph graph, OptionReader options) =>
        ImageCreation.FormatNodeAsync(graph, options, VdiCreateOptions.Read, VdiCreator.CreateAsync);

    /// <summary>qemu-img's way (vdi_co_create_opts): static=on is preallocation=metadata; the size is rounded up to whole sectors.</summary>
    public async ValueTask CreateFileAsync(BlockGraph graph, string fileName, JsonObject options)
    {
        var qapi = ImageCreation.RenameOptions(options, QemuImgOptions);
        if (options["static"] is JsonValue s && s.GetValue<bool>())
        {
            qapi["preallocation"] = "metadata";
        }

        var reader = new OptionReader(qapi);
        var create = VdiCreateOptions.Read(reader);
        reader.EnsureAllConsumed();
        create = create with { Size = (create.Size + VdiFormat.SectorSize - 1) & ~(long)(VdiFormat.SectorSize - 1) };
        await ImageCreation.FormatNewFileAsync(graph, fileName, file => VdiCreator.CreateAsync(file, create)).ConfigureAwait(false);
    }
}
