namespace ExportServer.Server.Cli;

/// <summary>
/// <c>export-server serve IMAGE [--socket PATH | --port N [--host H]] [--name NAME] [--read-only] [--format F]</c>:
/// a friendly front for the qemu-storage-daemon options it expands to.
/// </summary>
internal static class ServeCommand
{
    public static string[] Translate(IReadOnlyList<string> args)
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

        name ??= Path.GetFileNameWithoutExtension(image);
        var ro = readOnly ? "on" : "off";
        var blockdev = $"driver={format ?? "raw"},node-name=disk0,read-only={ro},file.driver=file,file.filename={image.Replace(",", ",,", StringComparison.Ordinal)}";
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
}
