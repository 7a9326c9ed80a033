using ExportServer.Block;
using ExportServer.Block.Core;

namespace ExportServer.Server.Cli;

/// <summary>
/// <c>export-server serve IMAGE [--socket PATH | --port N [--host H]] [--name NAME] [--read-only] [--format F]</c>:
/// a friendly front for the qemu-storage-daemon options it expands to. Without --format the format
/// is probed; a probed raw image is exported read-only (with a warning), since a client writing a
/// format header into its first sector would change what the next probe finds.
/// </summary>
internal static class ServeCommand
{
    public static string[] Translate(IReadOnlyList<string> args, TextWriter warnings) => Translate(args, warnings, out _);

    /// <summary>Translates, and gives the URI a client connects to (as nbdkit's --print-uri prints it).</summary>
    public static string[] Translate(IReadOnlyList<string> args, TextWriter warnings, out string uri)
    {
        string? image = null, socket = null, name = null, format = null, host = "127.0.0.1";
        int? port = null;
        var readOnly = false;
        var extra = new List<string>();
        for (var i = 0; i < args.Count; i++)
        {
            string Value() => i + 1 < args.Count ? args[++i] : throw new CommandLineException($"serve: option '{args[i]}' requires an argument");
            switch (args[i])
            {
                case "--socket": socket = Value(); break;
                case "--port": port = int.TryParse(Value(), out var p) ? p : throw new CommandLineException("serve: --port expects a number"); break;
                case "--host": host = Value(); break;
                case "--name": name = Value(); break;
                case "--format" or "-f": format = Value(); break;
                case "--read-only" or "-r": readOnly = true; break;
                case "--pidfile" or "--trace" or "-T": extra.Add(args[i]); extra.Add(Value()); break;
                case "--daemonize": extra.Add(args[i]); break;
                default:
                    if (args[i].StartsWith('-') || image is not null)
                    {
                        throw new CommandLineException($"serve: unexpected argument '{args[i]}'");
                    }

                    image = args[i];
                    break;
            }
        }

        if (image is null)
        {
            throw new CommandLineException("serve: an IMAGE is required");
        }

        if (format is null)
        {
            format = Probe(image);
            if (format == "raw" && !readOnly)
            {
                readOnly = true;
                warnings.WriteLine($"WARNING: Image format was not specified for '{image}' and probing guessed raw.");
                warnings.WriteLine("         Automatically detecting the format is dangerous for raw images, so it is exported read-only.");
                warnings.WriteLine("         Specify '--format raw' to export it writable.");
            }
        }

        name ??= Path.GetFileNameWithoutExtension(image);
        var ro = readOnly ? "on" : "off";
        var blockdev = $"driver={format},node-name=disk0,read-only={ro},file.driver=file,file.filename={image.Replace(",", ",,", StringComparison.Ordinal)}";
        uri = Uri(name, socket, host, port ?? 10809);
        var addr = socket is not null
            ? $"addr.type=unix,addr.path={socket}"
            : $"addr.type=inet,addr.host={host},addr.port={port ?? 10809}";
        return
        [
            "--blockdev", blockdev,
            "--nbd-server", addr,
            "--export", $"type=nbd,id=export0,node-name=disk0,name={name},writable={(readOnly ? "off" : "on")}",
            .. extra,
        ];
    }

    /// <summary><c>nbd+unix:///NAME?socket=PATH</c> or <c>nbd://HOST:PORT/NAME</c>, escaped as RFC 3986 asks.</summary>
    internal static string Uri(string name, string? socket, string host, int port)
    {
        var path = System.Uri.EscapeDataString(name);
        if (socket is not null)
        {
            return $"nbd+unix:///{path}?socket={System.Uri.EscapeDataString(Path.GetFullPath(socket)).Replace("%2F", "/", StringComparison.Ordinal)}";
        }

        var h = host.Contains(':', StringComparison.Ordinal) ? $"[{host}]" : host;
        return $"nbd://{h}:{port}/{path}";
    }

        /// <summary>The format the built-in drivers' probes find in the image's first bytes.</summary>
    internal static string Probe(string image)
    {
        var head = new byte[FormatProber.ProbeLength];
        int read;
        try
        {
            using var f = new FileStream(image, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            read = f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CommandLineException($"serve: Could not open '{image}': {BlockException.Reason(e)}");
        }

        var graph = new BlockGraph();
        BlockDrivers.RegisterBuiltIn(graph);
        return graph.Probes.Probe(head.AsSpan(0, read), image);
    }
}
