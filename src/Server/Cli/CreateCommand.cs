using System.Globalization;
using System.Text.Json.Nodes;
using ExportServer.Block;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Formats.Qcow2;
using ExportServer.Server.Commands;
using ExportServer.Server.Qmp;

namespace ExportServer.Server.Cli;

/// <summary>
/// <c>export-server create [-q] [-u] [-f FMT] [-b BACKING -F BACKING_FMT] [-o OPT=VAL,...] FILE [SIZE]</c>:
/// qemu-img create's arguments, "Formatting ..." line and errors, for qcow2 and raw images. Without
/// a SIZE the backing image's size is used (opened read-only, so it must exist unless -u is given).
/// </summary>
internal static class CreateCommand
{
    private static readonly string[] Qcow2Keys =
    [
        "size", "compat", "backing_file", "backing_fmt", "cluster_size", "preallocation", "lazy_refcounts",
        "refcount_bits", "extended_l2", "compression_type", "data_file", "data_file_raw",
    ];

    private static readonly string[] RawKeys = ["size", "preallocation"];

    public static async Task<int> RunAsync(IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr, string program)
    {
        string format = "raw";
        string? file = null;
        var quiet = false;
        var unsafeBacking = false;
        var options = new Dictionary<string, string>(StringComparer.Ordinal);
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
        var allowed = format switch
        {
            "qcow2" => Qcow2Keys,
            "raw" => RawKeys,
            _ when graph.HasDriver(format) => throw new CommandLineException($"Format driver '{format}' does not support image creation"),
            _ => throw new CommandLineException($"Unknown file format '{format}'"),
        };
        if (o.Keys.FirstOrDefault(k => !allowed.Contains(k)) is { } unknown)
        {
            throw new CommandLineException($"Invalid parameter '{unknown}'");
        }

        o.TryGetValue("backing_file", out var backing);
        o.TryGetValue("backing_fmt", out var backingFormat);
        long? size = o.TryGetValue("size", out var s) ? ParseSize(s, "Parameter 'size' expects a size") : null;
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
        var sectors = (size.Value + 511) & ~511L;
        o.TryGetValue("preallocation", out var prealloc);
        if (format == "raw")
        {
            stdout.WriteLine($"Formatting '{file}', fmt=raw size={size}" + (prealloc is null ? string.Empty : $" preallocation={prealloc}"));
            await ImageCreators.CreateRawFileAsync(file, sectors, prealloc ?? "off").ConfigureAwait(false);
            return;
        }

        var options = new Qcow2CreateOptions
        {
            Size = sectors,
            Compat = o.GetValueOrDefault("compat", "1.1"),
            BackingFile = backing,
            BackingFormat = backingFormat,
            ClusterSize = (int)Math.Min(ParseSize(o.GetValueOrDefault("cluster_size", "65536"), "Parameter 'cluster_size' expects a size") ?? 0, int.MaxValue),
            Preallocation = prealloc is null ? Qcow2Preallocation.Off
                : Qcow2Creator.PreallocationModes.TryGetValue(prealloc, out var p) ? p
                : throw new CommandLineException($"Parameter 'preallocation' does not accept value '{prealloc}'"),
            LazyRefcounts = Bool(o, "lazy_refcounts"),
            RefcountBits = (int)Math.Min(OptionReader.ParseInteger(o.GetValueOrDefault("refcount_bits", "16"))
                                         ?? throw new CommandLineException("Parameter 'refcount_bits' expects a number"), int.MaxValue),
            ExtendedL2 = Bool(o, "extended_l2"),
            CompressionType = o.GetValueOrDefault("compression_type", "zlib"),
            DataFile = o.GetValueOrDefault("data_file"),
            DataFileRaw = Bool(o, "data_file_raw"),
        };

        // Same fields, same order as qemu-img's line; optional ones only when given.
        var line = new List<string>
        {
            $"cluster_size={options.ClusterSize}",
            $"extended_l2={OnOff(options.ExtendedL2)}",
        };
        if (prealloc is not null)
        {
            line.Add($"preallocation={prealloc}");
        }

        line.Add($"compression_type={options.CompressionType}");
        line.Add($"size={size}");
        if (backing is not null)
        {
            line.Add($"backing_file={backing}");
            line.Add($"backing_fmt={backingFormat}");
        }

        if (options.DataFile is not null)
        {
            line.Add($"data_file={options.DataFile}");
        }

        if (o.ContainsKey("data_file_raw"))
        {
            line.Add($"data_file_raw={OnOff(options.DataFileRaw)}");
        }

        if (o.TryGetValue("compat", out var compat))
        {
            line.Add($"compat={compat}");
        }

        line.Add($"lazy_refcounts={OnOff(options.LazyRefcounts)}");
        line.Add($"refcount_bits={options.RefcountBits}");
        stdout.WriteLine($"Formatting '{file}', fmt=qcow2 {string.Join(' ', line)}");
        await Qcow2Creator.CreateAsync(graph, file, options).ConfigureAwait(false);
    }

    /// <summary>Opens the backing image read-only (relative to the new image's directory) for its size.</summary>
    private static async ValueTask<long> BackingSizeAsync(BlockGraph graph, string file, string backing, string backingFormat)
    {
        var path = Qcow2Driver.ResolveRelative(file, backing);
        BlockNode node;
        try
        {
            node = await graph.AddAsync(new JsonObject
            {
                ["driver"] = backingFormat,
                ["read-only"] = true,
                ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = path },
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

    private static bool Bool(Dictionary<string, string> o, string key) =>
        !o.TryGetValue(key, out var v) ? false
        : OptionReader.ParseBool(v) ?? throw new CommandLineException($"Parameter '{key}' expects 'on' or 'off'");

    private static string OnOff(bool value) => value ? "on" : "off";
}
