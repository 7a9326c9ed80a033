using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Server.Qmp;

namespace ExportServer.Server.Cli;

/// <summary>
/// qemu-storage-daemon's command line: object options kept in the order given (they are
/// executed in that order), plus --pidfile, --daemonize, --trace, --help and --version.
/// </summary>
internal sealed class CommandLine
{
    private static readonly Dictionary<string, (CliOptionKind Kind, string? ImpliedKey, bool JsonAllowed)> ObjectOptions = new()
    {
        ["--blockdev"] = (CliOptionKind.Blockdev, "driver", true),
        ["--chardev"] = (CliOptionKind.Chardev, "backend", false),
        ["--export"] = (CliOptionKind.Export, "type", true),
        ["--monitor"] = (CliOptionKind.Monitor, "chardev", false),
        ["--nbd-server"] = (CliOptionKind.NbdServer, null, true),
        ["--object"] = (CliOptionKind.Object, "qom-type", true),
    };

    public List<CliOption> Options { get; } = new();

    public string? PidFile { get; private set; }

    public bool Daemonize { get; private set; }

    public bool Help { get; private set; }

    public bool Version { get; private set; }

    public List<string> TracePatterns { get; } = new();

    /// <summary>Parses argv; throws <see cref="CommandLineException"/> with QEMU's wording.</summary>
    public static CommandLine Parse(IReadOnlyList<string> args)
    {
        var cl = new CommandLine();
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            string name = arg;
            string? inlineValue = null;
            if (arg.StartsWith("--", StringComparison.Ordinal) && arg.IndexOf('=') is var eq and > 0)
            {
                name = arg[..eq];
                inlineValue = arg[(eq + 1)..];
            }

            string TakeValue()
            {
                if (inlineValue is not null)
                {
                    return inlineValue;
                }

                if (i + 1 >= args.Count)
                {
                    throw new CommandLineException(
                        name.StartsWith("--", StringComparison.Ordinal)
                            ? $"option '{name}' requires an argument"
                            : $"option requires an argument -- '{name.TrimStart('-')}'",
                        fromGetopt: true);
                }

                return args[++i];
            }

            switch (name)
            {
                case "-h" or "--help":
                    cl.Help = true;
                    break;
                case "-V" or "--version":
                    cl.Version = true;
                    break;
                case "--daemonize":
                    cl.Daemonize = true;
                    break;
                case "--pidfile":
                    cl.PidFile = TakeValue();
                    break;
                case "-T" or "--trace":
                    cl.TracePatterns.Add(TakeValue());
                    break;
                default:
                    if (ObjectOptions.TryGetValue(name, out var spec))
                    {
                        var text = TakeValue();
                        cl.Options.Add(new CliOption(spec.Kind, name, text, ParseValue(name, text, spec.ImpliedKey, spec.JsonAllowed)));
                        break;
                    }

                    throw arg.StartsWith('-')
                        ? new CommandLineException(
                            arg.StartsWith("--", StringComparison.Ordinal) ? $"unrecognized option '{arg}'" : $"invalid option -- '{arg.TrimStart('-')}'",
                            fromGetopt: true)
                        : new CommandLineException($"Unexpected argument: {arg}");
            }
        }

        return cl;
    }

    private static JsonObject ParseValue(string name, string text, string? impliedKey, bool jsonAllowed)
    {
        try
        {
            if (jsonAllowed && text.StartsWith('{'))
            {
                var input = QmpJsonStreamer.ParseOne(text);
                if (input.Error is { } error)
                {
                    throw BlockException.Invalid(error);
                }

                return input.Value as JsonObject ?? throw BlockException.Invalid("JSON parse error, expected an object");
            }

            return KeyvalParser.Parse(text, impliedKey);
        }
        catch (BlockException e)
        {
            throw new CommandLineException($"{name} {text}: {e.Message}");
        }
    }

    public const string HelpText = """
        Usage: export-server [options]
               export-server serve IMAGE [--socket PATH | --port N] [--name NAME] [--read-only]
               export-server mount IMAGE FILE [--read-only] [--format F] [--growable]
               export-server create [-f FMT] [-b BACKING -F BACKING_FMT] [-o OPTIONS] FILE [SIZE]
               export-server bitmap-rotate --qmp SOCKET --current NAME --new NAME [--merge NAME]... NODE...
        A storage daemon compatible with qemu-storage-daemon

          -h, --help             display this help and exit
          -T, --trace [enable=]<pattern>
                                 enable trace output of subsystems matching <pattern>
                                 (nbd, block, server, monitor, fuse; '*' for all)
          -V, --version          output version information and exit

          --blockdev [driver=]<driver>[,node-name=<N>][,discard=ignore|unmap]
                     [,cache.direct=on|off][,cache.no-flush=on|off]
                     [,read-only=on|off][,auto-read-only=on|off]
                     [,force-share=on|off][,detect-zeroes=on|off|unmap]
                     [,driver specific parameters...]
                                 configure a block backend

          --chardev socket,id=<id>,path=<path>,server=on,wait=off
                                 configure a character device backend

          --daemonize            daemonize the process, and have the parent exit
                                 once startup is complete

          --export [type=]nbd,id=<id>,node-name=<node-name>[,name=<export-name>]
                   [,writable=on|off][,description=<text>][,iothread=<id>]
                                 export the specified block node over NBD
                                 (requires --nbd-server)

          --export [type=]fuse,id=<id>,node-name=<node-name>,mountpoint=<file>
                   [,growable=on|off][,writable=on|off][,allow-other=on|off|auto]
                                 export the specified block node over FUSE

          --monitor [chardev=]name[,mode=control][,pretty[=on|off]]
                                 configure a QMP monitor

          --nbd-server addr.type=inet,addr.host=<host>,addr.port=<port>
                       [,tls-creds=<id>][,tls-authz=<id>][,max-connections=<n>]
                       [,handshake-max-seconds=<n>]
          --nbd-server addr.type=unix,addr.path=<path>
                       [,tls-creds=<id>][,tls-authz=<id>][,max-connections=<n>]
                       [,handshake-max-seconds=<n>]
                                 start an NBD server for exporting block nodes

          --object iothread,id=<id>
                                 create an I/O thread for exports
          --object tls-creds-x509,id=<id>,dir=<dir>,endpoint=server|client
                   [,verify-peer=on|off][,passwordid=<secret-id>]
                                 TLS credentials for the NBD server or client
          --object tls-creds-psk,id=<id>,dir=<dir>,endpoint=server|client
                   [,username=<name>]
                                 TLS with a pre-shared key from <dir>/keys.psk
          --object authz-simple,id=<id>,identity=<dn>
          --object authz-list,id=<id>,rules.N.match=<dn>,rules.N.policy=allow|deny
                   [,rules.N.format=exact|glob][,policy=allow|deny]
          --object authz-list-file,id=<id>,filename=<json>[,refresh=on|off]
                                 who may connect to a TLS NBD server (tls-authz)

          --pidfile <path>       write process ID to a file after startup

        The options are executed in the order given; JSON ('{...}') is accepted
        wherever qemu-storage-daemon accepts it.
        """;
}
