using System.Globalization;
using System.Text.Json.Nodes;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Core;

/// <summary>
/// Creating images through the drivers of a graph: blockdev-create (<see cref="IImageCreator"/>) and
/// qemu-img's way (<see cref="IImageFileCreator"/>: parse -o options by their types, make the file
/// through its protocol, format it). Errors use QEMU's wording.
/// </summary>
public static class ImageCreation
{
    /// <summary>blockdev-create: the driver named in <paramref name="options"/> creates the image.</summary>
    public static async ValueTask CreateAsync(BlockGraph graph, JsonObject options)
    {
        var creator = FindCreator(graph, options);
        var reader = new OptionReader(options);
        reader.Consume("driver");
        await creator.CreateAsync(graph, reader).ConfigureAwait(false);
        reader.EnsureAllConsumed();
    }

    /// <summary>
    /// The creator of the driver that <paramref name="options"/> name, with the errors QEMU's blockdev-create
    /// gives before it starts a job: an unknown driver is not a value of the union's discriminator, and a
    /// driver that creates nothing takes no other option.
    /// </summary>
    public static IImageCreator FindCreator(BlockGraph graph, JsonObject options)
    {
        var driver = new OptionReader(options, "options.").RequireString("driver");
        var found = graph.TryGetDriver(driver) ?? throw BlockException.Invalid($"Parameter 'driver' does not accept value '{driver}'");
        if (found is IImageCreator creator)
        {
            return creator;
        }

        if (options.Select(o => o.Key).FirstOrDefault(k => k != "driver") is { } unexpected)
        {
            throw BlockException.Invalid($"Parameter 'options.{unexpected}' is unexpected");
        }

        throw BlockException.NotSupported("Driver does not support blockdev-create");
    }

    /// <summary>The qemu-img creator of <paramref name="format"/>, or null when the graph has no such driver or it creates no images.</summary>
    public static IImageFileCreator? FileCreator(BlockGraph graph, string format) => graph.TryGetDriver(format) as IImageFileCreator;

    /// <summary>Whether <paramref name="creator"/> takes <paramref name="name"/> among its options.</summary>
    public static bool Accepts(IImageFileCreator creator, string name) => creator.CreateOptions.Any(o => o.Name == name);

    /// <summary>
    /// Creates <paramref name="fileName"/> as a <paramref name="format"/> image with qemu-img's options
    /// (typed; see <see cref="ParseOptions"/>), as bdrv_img_create does for qemu-img and job targets.
    /// </summary>
    public static async ValueTask CreateFileAsync(BlockGraph graph, string format, string fileName, JsonObject options)
    {
        var creator = FileCreator(graph, format)
                      ?? throw BlockException.NotSupported($"Driver '{format}' does not support image creation");
        if (options.ContainsKey(CreateOption.BackingFile) && !Accepts(creator, CreateOption.BackingFile))
        {
            throw BlockException.NotSupported($"Backing file not supported for file format '{format}'");
        }

        await creator.CreateFileAsync(graph, fileName, options).ConfigureAwait(false);
    }

    /// <summary>
    /// qemu-img's -o values (text) as typed JSON under the same names: sizes and numbers as integers,
    /// booleans as true/false. Names the format does not know are refused.
    /// </summary>
    public static JsonObject ParseOptions(IImageFileCreator creator, IReadOnlyDictionary<string, string> given)
    {
        var typed = new JsonObject();
        foreach (var (name, text) in given)
        {
            var option = creator.CreateOptions.FirstOrDefault(o => o.Name == name)
                         ?? throw BlockException.Invalid($"Invalid parameter '{name}'");
            typed[name] = option.Type switch
            {
                CreateOptionType.Size => JsonValue.Create(OptionReader.ParseSize(text) ?? throw BlockException.Invalid($"Parameter '{name}' expects a size")),
                CreateOptionType.Number => JsonValue.Create(OptionReader.ParseInteger(text) ?? throw BlockException.Invalid($"Parameter '{name}' expects a number")),
                CreateOptionType.Bool => JsonValue.Create(OptionReader.ParseBool(text) ?? throw BlockException.Invalid($"Parameter '{name}' expects 'on' or 'off'")),
                _ => JsonValue.Create(text),
            };
        }

        return typed;
    }

    /// <summary>
    /// What qemu-img prints after "fmt=FORMAT": every option of the format in its order, with the value
    /// given or its default; one with neither is left out (qemu_opts_print).
    /// </summary>
    public static string Describe(IImageFileCreator creator, JsonObject options)
    {
        var fields = new List<string>();
        foreach (var option in creator.CreateOptions)
        {
            var value = options[option.Name] switch
            {
                null => option.Default,
                JsonValue v when option.Type == CreateOptionType.Bool => v.GetValue<bool>() ? "on" : "off",
                JsonValue v when option.Type is CreateOptionType.Size or CreateOptionType.Number => v.GetValue<long>().ToString(CultureInfo.InvariantCulture),
                var v => v.GetValue<string>(),
            };
            if (value is not null)
            {
                fields.Add($"{option.Name}={value}");
            }
        }

        return string.Join(' ', fields);
    }

    /// <summary>
    /// Makes the storage for <paramref name="fileName"/> through its protocol's blockdev-create, with
    /// <paramref name="options"/> (QAPI names: size, preallocation, …) added (QEMU's bdrv_co_create_file).
    /// </summary>
    public static async ValueTask CreateProtocolFileAsync(BlockGraph graph, string fileName, JsonObject options)
    {
        var protocol = graph.ProtocolOptions(fileName);
        var driver = protocol["driver"]!.GetValue<string>();
        if (graph.TryGetDriver(driver) is ILocationCreator)
        {
            protocol.Remove("driver");
            protocol = new JsonObject { ["driver"] = driver, ["location"] = protocol };
        }

        foreach (var (key, value) in options)
        {
            protocol[key] = value?.DeepClone();
        }

        await CreateAsync(graph, protocol).ConfigureAwait(false);
    }

    /// <summary>
    /// Makes an empty file at <paramref name="fileName"/> through its protocol, opens it and lets
    /// <paramref name="format"/> write the new image into it (QEMU's create_opts: bdrv_co_create_file, open, co_create).
    /// </summary>
    public static async ValueTask FormatNewFileAsync(BlockGraph graph, string fileName, Func<BlockNode, ValueTask> format)
    {
        await CreateProtocolFileAsync(graph, fileName, new JsonObject { ["size"] = 0 }).ConfigureAwait(false);
        var file = await OpenProtocolAsync(graph, fileName).ConfigureAwait(false);
        try
        {
            await format(file).ConfigureAwait(false);
        }
        finally
        {
            await graph.RemoveAsync(file.NodeName).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// blockdev-create of a format whose options name an existing node as 'file': binds the rest with
    /// <paramref name="read"/>, refuses what is left unread, then formats the node.
    /// </summary>
    public static async ValueTask FormatNodeAsync<T>(BlockGraph graph, OptionReader options, Func<OptionReader, T> read, Func<BlockNode, T, ValueTask> format)
    {
        var file = graph.Find(options.RequireString("file"));
        var create = read(options);
        options.EnsureAllConsumed();
        await format(file, create).ConfigureAwait(false);
    }

    /// <summary>qemu-img's options given in <paramref name="options"/>, under their blockdev-create names (QEMU's qdict_rename_keys).</summary>
    public static JsonObject RenameOptions(JsonObject options, IEnumerable<(CreateOption Option, string? QapiName)> names)
    {
        var qapi = new JsonObject();
        foreach (var (option, qapiName) in names)
        {
            if (qapiName is not null && options[option.Name] is { } value)
            {
                qapi[qapiName] = value.DeepClone();
            }
        }

        return qapi;
    }

    /// <summary>Opens <paramref name="fileName"/> through its protocol as an unnamed node of <paramref name="graph"/>.</summary>
    public static ValueTask<BlockNode> OpenProtocolAsync(BlockGraph graph, string fileName) => graph.AddAsync(graph.ProtocolOptions(fileName));

    /// <summary>A size from typed create options (missing: <paramref name="defaultValue"/>).</summary>
    public static long GetSize(JsonObject options, string name, long defaultValue = 0) =>
        options[name] is JsonValue v ? v.GetValue<long>() : defaultValue;
}
