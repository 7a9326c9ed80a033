namespace ExportServer.Server.Cli;

/// <summary>
/// <c>export-server mount IMAGE FILE [--read-only] [--format F] [--growable]</c>: opens the image chain
/// (format probed unless given; a probed raw image is mounted read-only, as <c>serve</c> does) and
/// shows it as the regular file FILE until SIGINT or SIGTERM, which unmount. FILE is created empty
/// when it does not exist, since the FUSE export mounts over an existing regular file.
/// </summary>
internal static class MountCommand
{
    public static string[] Translate(IReadOnlyList<string> args, TextWriter warnings)
    {
        string? image = null, file = null, format = null;
        var readOnly = false;
        var growable = false;
        var extra = new List<string>();
        for (var i = 0; i < args.Count; i++)
        {
            string Value() => i + 1 < args.Count ? args[++i] : throw new CommandLineException($"mount: option '{args[i]}' requires an argument");
            switch (args[i])
            {
                case "--read-only" or "-r": readOnly = true; break;
                case "--growable": growable = true; break;
                case "--format" or "-f": format = Value(); break;
                case "--pidfile" or "--trace" or "-T": extra.Add(args[i]); extra.Add(Value()); break;
                case "--daemonize": extra.Add(args[i]); break;
                default:
                    if (args[i].StartsWith('-'))
                    {
                        throw new CommandLineException($"mount: unexpected argument '{args[i]}'");
                    }

                    if (image is null)
                    {
                        image = args[i];
                    }
                    else if (file is null)
                    {
                        file = args[i];
                    }
                    else
                    {
                        throw new CommandLineException($"mount: unexpected argument '{args[i]}'");
                    }

                    break;
            }
        }

        if (image is null || file is null)
        {
            throw new CommandLineException("mount: usage: mount IMAGE FILE [--read-only] [--format F] [--growable]");
        }

        if (!File.Exists(image))
        {
            throw new CommandLineException($"mount: Could not open '{image}': No such file or directory");
        }

        if (format is null)
        {
            format = ServeCommand.Probe(image);
            if (format == "raw" && !readOnly)
            {
                readOnly = true;
                warnings.WriteLine($"WARNING: Image format was not specified for '{image}' and probing guessed raw.");
                warnings.WriteLine("         Automatically detecting the format is dangerous for raw images, so it is mounted read-only.");
                warnings.WriteLine("         Specify '--format raw' to mount it writable.");
            }
        }

        if (!File.Exists(file) && !Directory.Exists(file))
        {
            File.WriteAllBytes(file, []);
        }

        var ro = readOnly ? "on" : "off";
        var blockdev = $"driver={format},node-name=disk0,read-only={ro},file.driver=file,file.filename={image.Replace(",", ",,", StringComparison.Ordinal)}";
        var export = $"type=fuse,id=mount0,node-name=disk0,mountpoint={file.Replace(",", ",,", StringComparison.Ordinal)}," +
                     $"writable={(readOnly ? "off" : "on")},growable={(growable ? "on" : "off")}";
        return ["--blockdev", blockdev, "--export", export, .. extra];
    }
}
