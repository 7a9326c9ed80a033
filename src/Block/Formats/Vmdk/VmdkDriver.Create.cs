using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Vmdk;

internal sealed partial class VmdkDriver : IImageCreator, IImageFileCreator
{
    /// <summary>qemu-img's names in the order its line prints them, and the blockdev-create name each becomes (null: handled apart).</summary>
    private static readonly (CreateOption Option, string? QapiName)[] QemuImgOptions =
    [
        (new(CreateOption.Size, CreateOptionType.Size), "size"),
        (new("adapter_type", CreateOptionType.String), "adapter-type"),
        (new(CreateOption.BackingFile, CreateOptionType.String), "backing-file"),
        (new(CreateOption.BackingFormat, CreateOptionType.String), null),
        (new("compat6", CreateOptionType.Bool, "off"), null),
        (new("hwversion", CreateOptionType.String, "undefined"), "hwversion"),
        (new("toolsversion", CreateOptionType.String), "toolsversion"),
        (new("subformat", CreateOptionType.String), "subformat"),
        (new("zeroed_grain", CreateOptionType.Bool), "zeroed-grain"),
    ];

    public IReadOnlyList<CreateOption> CreateOptions { get; } = QemuImgOptions.Select(o => o.Option).ToArray();

    /// <summary>BlockdevCreateOptionsVmdk: file and extents are existing nodes (by name), the rest is <see cref="VmdkCreateOptions.Read"/>'s.</summary>
    public async ValueTask CreateAsync(BlockGraph graph, OptionReader options)
    {
        var file = graph.Find(options.RequireString("file"));
        var extents = new List<BlockNode>();
        if (options.Raw("extents") is { } list)
        {
            options.Consume("extents");
            if (list is not JsonArray array)
            {
                throw BlockException.Invalid($"Invalid parameter type for '{options.FullName("extents")}', expected: array");
            }

            foreach (var item in array)
            {
                var name = item is JsonValue v && v.TryGetValue<string>(out var s)
                    ? s
                    : throw BlockException.Invalid($"Invalid parameter type for '{options.FullName("extents")}', expected: BlockdevRef");
                extents.Add(graph.Find(name));
            }
        }

        var create = VmdkCreateOptions.Read(options);
        options.EnsureAllConsumed();
        if (create.Size % VmdkFormat.SectorSize != 0)
        {
            throw BlockException.Invalid("Image size must be a multiple of 512 bytes");
        }

        await VmdkCreator.CreateAsync(graph, create, new NodeTargets(file, extents), file.FileName).ConfigureAwait(false);
    }

    /// <summary>qemu-img's options renamed to blockdev-create's and bound by the same reader, with qemu-img's own checks first.</summary>
    public async ValueTask CreateFileAsync(BlockGraph graph, string fileName, JsonObject options)
    {
        if ((string?)options[CreateOption.BackingFormat] is { } backingFormat && backingFormat != "vmdk")
        {
            throw BlockException.Invalid("backing_file must be a vmdk image");
        }

        foreach (var (name, values) in new[] { ("adapter_type", VmdkCreateOptions.AdapterTypes), ("subformat", VmdkCreateOptions.Subformats) })
        {
            if ((string?)options[name] is { } value && !values.Contains(value))
            {
                throw BlockException.Invalid($"invalid parameter value: {value}");
            }
        }

        var qapi = new JsonObject();
        foreach (var (option, qapiName) in QemuImgOptions)
        {
            if (qapiName is not null && options[option.Name] is { } value)
            {
                qapi[qapiName] = value.DeepClone();
            }
        }

        if ((string?)qapi["hwversion"] == "undefined")
        {
            qapi.Remove("hwversion");
        }

        var reader = new OptionReader(qapi);
        var create = VmdkCreateOptions.Read(reader) with { Compat6 = options["compat6"]?.GetValue<bool>() ?? false };
        reader.EnsureAllConsumed();
        if (fileName.Length == 0)
        {
            throw BlockException.Invalid("No filename provided");
        }

        await VmdkCreator.CreateAsync(graph, create, new FileTargets(graph, fileName, create), fileName).ConfigureAwait(false);
    }

    /// <summary>qemu-img's files: the image itself, then NAME-f001.vmdk / NAME-s001.vmdk … (split) or NAME-flat.vmdk next to it.</summary>
    private sealed class FileTargets(BlockGraph graph, string fileName, VmdkCreateOptions options) : IVmdkCreateTargets
    {
        public async ValueTask<BlockNode> GetAsync(int index)
        {
            var dir = Path.GetDirectoryName(fileName) ?? string.Empty;
            var baseName = Path.GetFileName(fileName);
            var dot = baseName.LastIndexOf('.');
            var (prefix, postfix) = dot < 0 ? (baseName, string.Empty) : (baseName[..dot], baseName[dot..]);
            var name = index == 0 ? baseName
                : options.IsSplit ? $"{prefix}-{(options.IsFlat ? 'f' : 's')}{index:000}{postfix}"
                : $"{prefix}-flat{postfix}";
            var path = Path.Combine(dir, name);
            await ImageCreation.CreateProtocolFileAsync(graph, path, new JsonObject { ["size"] = 0 }).ConfigureAwait(false);
            return await ImageCreation.OpenProtocolAsync(graph, path).ConfigureAwait(false);
        }

        public bool HasUnused(int index) => false;

        public async ValueTask ReleaseAsync(BlockNode node) => await graph.RemoveAsync(node.NodeName).ConfigureAwait(false);
    }

    /// <summary>blockdev-create's nodes: 'file' and the list 'extents', used in order.</summary>
    private sealed class NodeTargets(BlockNode file, List<BlockNode> extents) : IVmdkCreateTargets
    {
        public ValueTask<BlockNode> GetAsync(int index) =>
            index == 0 ? ValueTask.FromResult(file)
            : index <= extents.Count ? ValueTask.FromResult(extents[index - 1])
            : throw BlockException.Invalid($"Extent [{index - 1}] not specified");

        public bool HasUnused(int index) => index <= extents.Count;

        public ValueTask ReleaseAsync(BlockNode node) => ValueTask.CompletedTask;
    }
}
