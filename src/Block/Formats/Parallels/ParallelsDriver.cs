using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Parallels;

/// <summary>
/// The "parallels" driver: options file, backing (a node; the header names none), prealloc-mode
/// (falloc or truncate) and prealloc-size, as QEMU's runtime options. Creates images as qemu-img does.
/// </summary>
internal sealed class ParallelsDriver : IBlockDriver, IFormatProbe, IImageCreator, IImageFileCreator
{
    /// <summary>qemu-img's options in the order its line prints them, and their blockdev-create names.</summary>
    private static readonly (CreateOption Option, string? QapiName)[] QemuImgOptions =
    [
        (new(CreateOption.Size, CreateOptionType.Size), "size"),
        (new("cluster_size", CreateOptionType.Size, "1048576"), "cluster-size"),
        (new("preallocation", CreateOptionType.String), null),
    ];

    public static ParallelsDriver Instance { get; } = new();

    public string Name => "parallels";

    public IReadOnlyList<CreateOption> CreateOptions { get; } = QemuImgOptions.Select(o => o.Option).ToArray();

    /// <summary>QEMU's parallels_probe: either magic and version 2 in a whole header.</summary>
    public int Probe(ReadOnlySpan<byte> head, string? fileName) =>
        head.Length >= ParallelsFormat.HeaderSize
        && (head[..16].SequenceEqual(ParallelsFormat.Magic) || head[..16].SequenceEqual(ParallelsFormat.MagicExt))
        && System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(head[16..]) == ParallelsFormat.Version
            ? 100
            : 0;

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var mode = options.GetString("prealloc-mode") ?? "falloc";
        if (mode is not ("falloc" or "truncate"))
        {
            throw BlockException.Invalid($"Parameter 'prealloc-mode' does not accept value '{mode}'");
        }

        var size = options.GetSize("prealloc-size") ?? ParallelsFormat.DefaultPreallocSize;
        var file = await context.OpenFileChildAsync(options).ConfigureAwait(false);
        var node = await ParallelsNode.OpenAsync(context.NodeName, context.ReadOnly, file, mode == "falloc", size).ConfigureAwait(false);
        return await HeaderBacking.AttachToAsync(node, node.AttachBacking, context, options, file, null, null, "parallels").ConfigureAwait(false);
    }

    /// <summary>BlockdevCreateOptionsParallels: file (an existing node), size, cluster-size.</summary>
    public ValueTask CreateAsync(BlockGraph graph, OptionReader options) =>
        ImageCreation.FormatNodeAsync(graph, options, ParallelsCreateOptions.Read, ParallelsCreator.CreateAsync);

    /// <summary>
    /// qemu-img's way (parallels_co_create_opts): sizes rounded up to whole sectors. preallocation is
    /// off, or metadata (every cluster mapped); falloc and full are refused, since QEMU's image
    /// creation empties the file it preallocated.
    /// </summary>
    public async ValueTask CreateFileAsync(BlockGraph graph, string fileName, JsonObject options)
    {
        var reader = new OptionReader(ImageCreation.RenameOptions(options, QemuImgOptions));
        var create = ParallelsCreateOptions.Read(RoundedUp(reader));
        var prealloc = options["preallocation"]?.GetValue<string>() ?? "off";
        create = create with
        {
            MapAll = prealloc switch
            {
                "off" => false,
                "metadata" => true,
                "falloc" or "full" => throw BlockException.Invalid($"Preallocation mode '{prealloc}' is not supported for parallels (the file is emptied when the image is made)"),
                _ => throw BlockException.Invalid($"Parameter 'preallocation' does not accept value '{prealloc}'"),
            },
        };
        await ImageCreation.FormatNewFileAsync(graph, fileName, file => ParallelsCreator.CreateAsync(file, create)).ConfigureAwait(false);
    }

    /// <summary>QEMU silently rounds the size and the cluster size up to whole sectors on this path.</summary>
    private static OptionReader RoundedUp(OptionReader reader)
    {
        var rounded = new JsonObject();
        foreach (var (key, value) in reader.Options)
        {
            rounded[key] = key is "size" or "cluster-size" && value is JsonValue v && v.TryGetValue<long>(out var n)
                ? (n + ParallelsFormat.SectorSize - 1) / ParallelsFormat.SectorSize * ParallelsFormat.SectorSize
                : value?.DeepClone();
        }

        rounded["cluster-size"] ??= ParallelsFormat.DefaultClusterSize;
        return new OptionReader(rounded);
    }
}
