using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Vhdx;

/// <summary>
/// The "vhdx" driver (Hyper-V images): option file, and for a differencing image backing (as qcow2's:
/// absent = the parent its locator names, opened read-only as vhdx); creates dynamic and fixed images,
/// and differencing ones given a backing file (which qemu-img does not).
/// </summary>
internal sealed class VhdxDriver : IBlockDriver, IFormatProbe, IImageCreator, IImageFileCreator
{
    /// <summary>qemu-img's options in the order its line prints them, and their blockdev-create names.</summary>
    private static readonly (CreateOption Option, string? QapiName)[] QemuImgOptions =
    [
        (new(CreateOption.Size, CreateOptionType.Size), "size"),
        (new("log_size", CreateOptionType.Size, "1048576"), "log-size"),
        (new("block_size", CreateOptionType.Size, "0"), "block-size"),
        (new("subformat", CreateOptionType.String), "subformat"),
        (new("block_state_zero", CreateOptionType.Bool), "block-state-zero"),
        (new(CreateOption.BackingFile, CreateOptionType.String), "backing-file"),
        (new(CreateOption.BackingFormat, CreateOptionType.String), null),
    ];

    public static VhdxDriver Instance { get; } = new();

    public string Name => "vhdx";

    public IReadOnlyList<CreateOption> CreateOptions { get; } = QemuImgOptions.Select(o => o.Option).ToArray();

    public int Probe(ReadOnlySpan<byte> head, string? fileName) => head.Length >= 8 && head[..8].SequenceEqual("vhdxfile"u8) ? 100 : 0;

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var file = await context.OpenFileChildAsync(options).ConfigureAwait(false);
        var node = await VhdxNode.OpenAsync(context.NodeName, context.ReadOnly, file).ConfigureAwait(false);
        if (!node.Metadata.HasParentImage)
        {
            return node;
        }

        await HeaderBacking.AttachToAsync(
            node, node.AttachBacking, context, options, file, VhdxNode.ParentFileName(node.Metadata, file.FileName), "vhdx", "vhdx").ConfigureAwait(false);
        try
        {
            node.CheckParent();
            return node;
        }
        catch
        {
            await node.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// BlockdevCreateOptionsVhdx: file (an existing node), size, log-size, block-size, subformat,
    /// block-state-zero; and, beyond QEMU, backing-file for a differencing image.
    /// </summary>
    public ValueTask CreateAsync(BlockGraph graph, OptionReader options) =>
        ImageCreation.FormatNodeAsync(graph, options, VhdxCreateOptions.Read, (file, create) => VhdxCreator.CreateAsync(graph, file, create));

    /// <summary>qemu-img's way (vhdx_co_create_opts): the size rounded to sectors, log and block sizes to MiB, block_size=0 meaning automatic.</summary>
    public async ValueTask CreateFileAsync(BlockGraph graph, string fileName, JsonObject options)
    {
        if ((string?)options[CreateOption.BackingFormat] is { } backingFormat && backingFormat != "vhdx")
        {
            throw BlockException.Invalid("vhdx: the parent of a differencing image must be a vhdx image");
        }

        var reader = new OptionReader(ImageCreation.RenameOptions(options, QemuImgOptions));
        var create = VhdxCreateOptions.Read(reader);
        reader.EnsureAllConsumed();
        static long Round(long value, long unit) => (value + unit - 1) / unit * unit;
        create = create with
        {
            Size = Round(create.Size, 512),
            LogSize = Round(create.LogSize, VhdxFormat.MiB),
            BlockSize = Round(create.BlockSize, VhdxFormat.MiB),
        };
        create.EffectiveBlockSize();
        await ImageCreation.FormatNewFileAsync(graph, fileName, file => VhdxCreator.CreateAsync(graph, file, create)).ConfigureAwait(false);
    }
}
