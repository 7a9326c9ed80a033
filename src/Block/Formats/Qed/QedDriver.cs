using System.Buffers.Binary;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Qed;

/// <summary>
/// The "qed" driver: options file and backing (node name; null = none; object = inline; absent = the
/// header's backing file, raw when the header says so, else probed). Creates images as qemu-img does.
/// </summary>
internal sealed class QedDriver : IBlockDriver, IFormatProbe, IImageCreator, IImageFileCreator
{
    /// <summary>qemu-img's options in the order its line prints them, and their blockdev-create names.</summary>
    private static readonly (CreateOption Option, string? QapiName)[] QemuImgOptions =
    [
        (new(CreateOption.Size, CreateOptionType.Size), "size"),
        (new(CreateOption.BackingFile, CreateOptionType.String), "backing-file"),
        (new(CreateOption.BackingFormat, CreateOptionType.String), "backing-fmt"),
        (new("cluster_size", CreateOptionType.Size, "65536"), "cluster-size"),
        (new("table_size", CreateOptionType.Number), "table-size"),
    ];

    public static QedDriver Instance { get; } = new();

    public string Name => "qed";

    public IReadOnlyList<CreateOption> CreateOptions { get; } = QemuImgOptions.Select(o => o.Option).ToArray();

    /// <summary>QEMU's bdrv_qed_probe: the magic.</summary>
    public int Probe(ReadOnlySpan<byte> head, string? fileName) =>
        head.Length >= QedFormat.HeaderLength && BinaryPrimitives.ReadUInt32LittleEndian(head) == QedFormat.Magic ? 100 : 0;

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var file = await context.OpenFileChildAsync(options).ConfigureAwait(false);
        var node = await QedNode.OpenAsync(context.NodeName, context.ReadOnly, file).ConfigureAwait(false);
        return await HeaderBacking.AttachToAsync(
            node, node.AttachBacking, context, options, file, node.HeaderBackingName, node.BackingFormat, "qed").ConfigureAwait(false);
    }

    /// <summary>BlockdevCreateOptionsQed: file (an existing node), size, backing-file, backing-fmt, cluster-size, table-size.</summary>
    public ValueTask CreateAsync(BlockGraph graph, OptionReader options) =>
        ImageCreation.FormatNodeAsync(graph, options, QedCreateOptions.Read, QedCreator.CreateAsync);

    /// <summary>qemu-img's way (bdrv_qed_co_create_opts): the options renamed and bound as blockdev-create's.</summary>
    public async ValueTask CreateFileAsync(BlockGraph graph, string fileName, JsonObject options)
    {
        var reader = new OptionReader(ImageCreation.RenameOptions(options, QemuImgOptions));
        var create = QedCreateOptions.Read(reader);
        reader.EnsureAllConsumed();
        await ImageCreation.FormatNewFileAsync(graph, fileName, file => QedCreator.CreateAsync(file, create)).ConfigureAwait(false);
    }
}
