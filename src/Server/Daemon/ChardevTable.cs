using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Server.Daemon;

/// <summary>--chardev and --monitor: the sockets QMP monitors listen on.</summary>
internal sealed class ChardevTable
{
    private readonly Dictionary<string, Chardev> _chardevs = new(StringComparer.Ordinal);

    /// <summary>--chardev: only unix server sockets, the kind a QMP monitor listens on.</summary>
    public void Add(JsonObject options)
    {
        var r = new OptionReader(options);
        var backend = r.RequireString("backend");
        var id = r.RequireString("id");
        if (backend != "socket")
        {
            throw BlockException.NotSupported($"chardev backend '{backend}' is not supported (only 'socket')");
        }

        var path = r.RequireString("path");
        var server = r.GetBool("server", false);
        var wait = r.GetBool("wait", true);
        r.GetBool("telnet");
        r.GetBool("tn3270");
        r.GetBool("websocket");
        r.GetBool("nodelay");
        r.GetInt("reconnect");
        r.EnsureAllConsumed();
        if (!server)
        {
            throw BlockException.NotSupported($"chardev '{id}': only server=on sockets are supported");
        }

        if (_chardevs.ContainsKey(id))
        {
            throw BlockException.Invalid($"attempt to add duplicate property '{id}' to object (type 'container')");
        }

        _chardevs[id] = new Chardev(id, path, server, wait);
    }

    /// <summary>--monitor: claims the chardev a QMP monitor is to serve (the protocol is served by the monitor subsystem).</summary>
    public Chardev AddMonitor(JsonObject options)
    {
        var r = new OptionReader(options);
        var id = r.RequireString("chardev");
        var mode = r.GetString("mode") ?? "control";
        r.GetBool("pretty");
        r.GetString("id");
        r.EnsureAllConsumed();
        if (mode != "control")
        {
            throw BlockException.Invalid("Only QMP is supported");
        }

        if (!_chardevs.TryGetValue(id, out var chardev))
        {
            throw BlockException.Invalid($"chardev \"{id}\" not found");
        }

        if (chardev.InUse)
        {
            throw BlockException.Invalid($"Device '{id}' is in use");
        }

        chardev.InUse = true;
        return chardev;
    }
}
