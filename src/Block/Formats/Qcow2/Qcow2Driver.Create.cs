using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Qcow2;

public sealed partial class Qcow2Driver : IImageCreator, IImageFileCreator
{
    /// <summary>
    /// qemu-img's names in the order its line prints them, and the blockdev-create name each becomes
    /// (null: handled apart). data_file is a file name here and a node in blockdev-create.
    /// </summary>
    private static readonly (CreateOption Option, string? QapiName)[] QemuImgOptions =
    [
        (new("cluster_size", CreateOptionType.Size, "65536"), "cluster-size"),
        (new("extended_l2", CreateOptionType.Bool, "off"), "extended-l2"),
        (new(CreateOption.Preallocation, CreateOptionType.String), "preallocation"),
        (new("compression_type", CreateOptionType.String, "zlib"), "compression-type"),
        (new(CreateOption.Size, CreateOptionType.Size), "size"),
        (new(CreateOption.BackingFile, CreateOptionType.String), "backing-file"),
        (new(CreateOption.BackingFormat, CreateOptionType.String), "backing-fmt"),
        (new("data_file", CreateOptionType.String), null),
        (new("data_file_raw", CreateOptionType.Bool), "data-file-raw"),
        (new("compat", CreateOptionType.String), "version"),
        (new("lazy_refcounts", CreateOptionType.Bool, "off"), "lazy-refcounts"),
        (new("refcount_bits", CreateOptionType.Number, "16"), "refcount-bits"),
    ];

    public IReadOnlyList<CreateOption> CreateOptions { get; } = QemuImgOptions.Select(o => o.Option).ToArray();

    /// <summary>
    /// BlockdevCreateOptionsQcow2: file and data-file are existing nodes (by name), the rest is
    /// <see cref="Qcow2CreateOptions.Read"/>'s. Encryption is refused.
    /// </summary>
    public async ValueTask CreateAsync(BlockGraph graph, OptionReader options)
    {
        var file = graph.Find(options.RequireString("file"));
        var data = options.GetString("data-file") is { } dataName ? graph.Find(dataName) : null;
        if (options.Has("encrypt"))
        {
            throw BlockException.NotSupported("Encryption is not supported by this qcow2 implementation");
        }

        var create = Qcow2CreateOptions.Read(options) with { DataFile = data?.FileName };
        options.EnsureAllConsumed();
        await Qcow2Creator.CreateAsync(file, create, data).ConfigureAwait(false);
    }

    /// <summary>qemu-img's options renamed to blockdev-create's and bound by the same reader; the data file keeps the name given.</summary>
    public async ValueTask CreateFileAsync(BlockGraph graph, string fileName, JsonObject options)
    {
        var qapi = new JsonObject();
        foreach (var (option, qapiName) in QemuImgOptions)
        {
            if (qapiName is not null && options[option.Name] is { } value)
            {
                qapi[qapiName] = value.DeepClone();
            }
        }

        var reader = new OptionReader(qapi);
        var create = Qcow2CreateOptions.Read(reader) with { DataFile = (string?)options["data_file"] };
        reader.EnsureAllConsumed();
        await Qcow2Creator.CreateAsync(graph, fileName, create).ConfigureAwait(false);
    }
}
