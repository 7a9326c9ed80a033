using System.Globalization;
using System.Text.Json.Nodes;
using ExportServer.Block;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Server.Daemon;
using ExportServer.Server.Qmp;

namespace ExportServer.Server.Cli;

/// <summary>
/// <c>export-server create [-q] [-u] [--object OBJ] [-f FMT] [-b BACKING -F BACKING_FMT] [-o OPT=VAL,...] FILE [SIZE]</c>:
/// qemu-img create's arguments, "Formatting ..." line and errors, for every format whose driver creates images. Without
/// a SIZE the backing image's size is used (opened read-only, so it must exist unless -u is given). Objects
/// (secrets for encrypted images) are made before the image, as qemu-img's --object.
/// </summary>
internal static class CreateCommand
{
    public static async Task<int> RunAsync(IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr, string program)
    {
        string format = "raw";
        string? file = null;
        var quiet = false;
        var unsafeBacking = false;
        var options = new Dictionary<string, string>(StringComparer.Ordinal);
        var objects = new List<string>();
        try
        {
            string? size = null;
            for (var i = 0; i < args.Count; i++)
            {
                string Value() => i + 1 < args.Count ? args[++i] : throw new CommandLineException($"option requires an argument -- '{args[i].TrimStart('-')}'");
                switch (args[i])
                {
                    case "-f": format = Value(); break;
                    case "-b": options["backing_file"] = Value(); break;
                    case "-F": options["backing_fmt"] = Value(); break;
                    case "-o": ParseOptions(Value(), options); break;
                    case "-q": quiet = true; break;
                    case "-u": unsafeBacking = true; break;
                    case "--object": objects.Add(Value()); break;
                    default:
                        if (args[i].StartsWith('-') && args[i].Length > 1)
                        {
                            throw new CommandLineException($"invalid option -- '{args[i].TrimStart('-')}'");
                        }

                        if (file is null)
                        {
                            file = args[i];
                        }
                        else if (size is null)
                        {
                            size = args[i];
                        }
                        else
                        {
                            throw new CommandLineException("Expecting one image file name");
                        }

                        break;
                }
            }

            if (file is null)
            {
                throw new CommandLineException("Expecting image file name");
            }

            if (size is not null)
            {
                options["size"] = (ParseSize(size, "Invalid image size specified. You may use k, M, G, T, P or E suffixes for")
                                   ?? 0).ToString(CultureInfo.InvariantCulture);
            }
        }
        catch (CommandLineException e)
        {
            stderr.WriteLine($"{program}: {e.Message}");
            return 1;
        }

        try
        {
            var graph = new BlockGraph();
            BlockDrivers.RegisterBuiltIn(graph);
            try
            {
                foreach (var text in objects)
                {
                    AddObject(graph, KeyvalParser.Parse(text, "qom-type"));
                }

                await CreateAsync(graph, format, file, options, unsafeBacking, quiet ? TextWriter.Null : stdout).ConfigureAwait(false);
            }
            finally
            {
                await graph.CloseAllAsync().ConfigureAwait(false);
            }

            return 0;
        }
        catch (Exception e) when (e is BlockException or QmpException or CommandLineException or IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"{program}: {file}: {BlockException.Describe(e)}");
            return 1;
        }
    }

    private static async ValueTask CreateAsync(BlockGraph graph, string format, string file, Dictionary<string, string> o, bool unsafeBacking, TextWriter stdout)
    {
        var creator = ImageCreation.FileCreator(graph, format) ?? throw new CommandLineException(graph.HasDriver(format)
            ? $"Format driver '{format}' does not support image creation"
            : $"Unknown file format '{format}'");
        var options = ImageCreation.ParseOptions(creator, o);
        var backing = (string?)options[CreateOption.BackingFile];
        var backingFormat = (string?)options[CreateOption.BackingFormat];
        long? size = options[CreateOption.Size] is { } given ? given.GetValue<long>() : null;
        if (backing is not null)
        {
            if (backingFormat is null)
            {
                throw new CommandLineException("Backing file specified without backing format");
            }

            if (!unsafeBacking)
            {
                var backingSize = await BackingSizeAsync(graph, file, backing, backingFormat).ConfigureAwait(false);
                size ??= backingSize;
            }
        }
        else if (backingFormat is not null)
        {
            throw new CommandLineException("Backing format cannot be used without backing file");
        }

        if (size is null)
        {
            throw new CommandLineException("Image creation needs a size parameter");
        }

        // As qemu-img: the line shows the size given, the image is made in whole 512-byte sectors.
        options[CreateOption.Size] = size.Value;
        stdout.WriteLine($"Formatting '{file}', fmt={format} {ImageCreation.Describe(creator, options)}");
        options[CreateOption.Size] = (size.Value + 511) & ~511L;
        await creator.CreateFileAsync(graph, file, options).ConfigureAwait(false);
    }

    /// <summary>An --object of one of the daemon's kinds, entered among the graph's named objects.</summary>
    private static void AddObject(BlockGraph graph, JsonObject properties)
    {
        var r = new OptionReader(properties);
        var type = r.RequireString("qom-type");
        var id = r.RequireString("id");
        var kind = ObjectTypes.All.FirstOrDefault(t => t.QomType == type)
                   ?? throw BlockException.Invalid($"Parameter 'qom-type' does not accept value '{type}'");
        if (graph.Objects.Contains(id))
        {
            throw BlockException.Invalid($"attempt to add duplicate property '{id}' to object (type 'container')");
        }

        kind.Add(graph.Objects, id, r);
    }

    /// <summary>Opens the backing image read-only (relative to the new image's directory) for its size.</summary>
    private static async ValueTask<long> BackingSizeAsync(BlockGraph graph, string file, string backing, string backingFormat)
    {
        var path = BackingFileName.Resolve(file, backing);
        BlockNode node;
        try
        {
            node = await graph.AddAsync(new JsonObject
            {
                ["driver"] = backingFormat,
                ["read-only"] = true,
                ["file"] = graph.ProtocolOptions(path),
            }).ConfigureAwait(false);
        }
        catch (BlockException e)
        {
            throw new CommandLineException($"Could not open backing file: {e.Message}");
        }

        var length = node.Length;
        await graph.RemoveAsync(node.NodeName).ConfigureAwait(false);
        return length;
    }

    /// <summary>qemu-img's -o syntax: comma-separated key=value pairs, ",," for a literal comma.</summary>
    private static void ParseOptions(string text, Dictionary<string, string> into)
    {
        foreach (var pair in text.Replace(",,", "\0", StringComparison.Ordinal).Split(','))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw new CommandLineException($"Invalid option list '{text}'");
            }

            into[pair[..eq]] = pair[(eq + 1)..].Replace('\0', ',');
        }
    }

    private static long? ParseSize(string text, string error) =>
        OptionReader.ParseSize(text) ?? throw new CommandLineException(error);
}
