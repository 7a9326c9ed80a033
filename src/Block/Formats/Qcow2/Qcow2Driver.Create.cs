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
        (new("encryption", CreateOptionType.Bool), null),
        (new("encrypt.format", CreateOptionType.String), null),
        (new("encrypt.key-secret", CreateOptionType.String), "key-secret"),
        (new("encrypt.cipher-alg", CreateOptionType.String), "cipher-alg"),
        (new("encrypt.cipher-mode", CreateOptionType.String), "cipher-mode"),
        (new("encrypt.ivgen-alg", CreateOptionType.String), "ivgen-alg"),
        (new("encrypt.ivgen-hash-alg", CreateOptionType.String), "ivgen-hash-alg"),
        (new("encrypt.hash-alg", CreateOptionType.String), "hash-alg"),
        (new("encrypt.iter-time", CreateOptionType.Number), "iter-time"),
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

    private const string EncryptPrefix = "encrypt.";

    public IReadOnlyList<CreateOption> CreateOptions { get; } = QemuImgOptions.Select(o => o.Option).ToArray();

    /// <summary>
    /// BlockdevCreateOptionsQcow2: file and data-file are existing nodes (by name), the rest is
    /// <see cref="Qcow2CreateOptions.Read"/>'s; encrypt.key-secret names a secret object of the graph.
    /// </summary>
    public async ValueTask CreateAsync(BlockGraph graph, OptionReader options)
    {
        var file = graph.Find(options.RequireString("file"));
        var data = options.GetString("data-file") is { } dataName ? graph.Find(dataName) : null;
        var create = Qcow2CreateOptions.Read(options) with { DataFile = data?.FileName };
        options.EnsureAllConsumed();
        await Qcow2Creator.CreateAsync(file, create, data, graph.Objects).ConfigureAwait(false);
    }

    /// <summary>
    /// qemu-img's options renamed to blockdev-create's and bound by the same reader; the data file keeps
    /// the name given; encrypt.* go into the encrypt object, whose format aes (or encryption=on) is QAPI's qcow.
    /// </summary>
    public async ValueTask CreateFileAsync(BlockGraph graph, string fileName, JsonObject options)
    {
        var qapi = new JsonObject();
        var encrypt = new JsonObject();
        foreach (var (option, qapiName) in QemuImgOptions)
        {
            if (qapiName is not null && options[option.Name] is { } value)
            {
                var into = option.Name.StartsWith(EncryptPrefix, StringComparison.Ordinal) ? encrypt : qapi;
                into[qapiName] = value.DeepClone();
            }
        }

        var format = (string?)options["encrypt.format"];
        if (options["encryption"] is { } legacy)
        {
            if (format is not null)
            {
                throw BlockException.Invalid("Options \"encryption\" and \"encrypt.format\" are mutually exclusive");
            }

            format = legacy.GetValue<bool>() ? "aes" : null;
        }

        if (format is not null || encrypt.Count > 0)
        {
            encrypt["format"] = format switch
            {
                null => throw BlockException.Invalid("Parameter 'encrypt.format' is missing"),
                "aes" => "qcow",
                "luks" => "luks",
                _ => throw BlockException.Invalid($"Parameter 'encrypt.format' does not accept value '{format}'"),
            };
            qapi["encrypt"] = encrypt;
        }

        var reader = new OptionReader(qapi);
        var create = Qcow2CreateOptions.Read(reader) with { DataFile = (string?)options["data_file"] };
        reader.EnsureAllConsumed();
        await Qcow2Creator.CreateAsync(graph, fileName, create).ConfigureAwait(false);
    }
}
