using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.Nbd.Server;
using ExportServer.Server.Daemon;
using ExportServer.Server.Qmp;
using ExportServer.Server.Qmp.Types;
using static ExportServer.Server.Commands.ControlCommands;

namespace ExportServer.Server.Commands;

/// <summary>qapi/block-export.json: the NBD server, exports added and removed at run time, and their list.</summary>
internal static class ExportCommands
{
    private static readonly QmpArg Mode = QmpArg.Enum("mode", optional: true, "safe", "hard");

    public static void Register(QmpDispatcher d, StorageDaemon daemon)
    {
        d.Add(new QmpCommand("nbd-server-start", [QmpArg.Obj("addr"), QmpArg.Str("tls-creds", true), QmpArg.Str("tls-authz", true), QmpArg.Int("max-connections", true), QmpArg.Int("handshake-max-seconds", true)], call =>
        {
            daemon.Nbd.Start(call.Arguments);
            return Empty();
        }));
        d.Add(new QmpCommand("nbd-server-stop", [], async _ =>
        {
            await daemon.Nbd.StopAsync().ConfigureAwait(false);
            return null;
        }));
        d.Add(new QmpCommand("nbd-server-add", [QmpArg.Str("device"), QmpArg.Str("name", true), QmpArg.Str("description", true), QmpArg.Bool("writable"), QmpArg.Str("bitmap", true)], async call =>
        {
            if (daemon.Nbd.Server is null)
            {
                throw QmpException.Generic("NBD server not running");
            }

            var device = call.RequireString("device");
            var name = call.GetString("name") ?? device;
            var options = new JsonObject { ["type"] = "nbd", ["id"] = name, ["node-name"] = device, ["name"] = name };
            if (call.GetString("description") is { } description)
            {
                options["description"] = description;
            }

            if (call.GetString("bitmap") is { } bitmap)
            {
                options["bitmaps"] = new JsonArray(bitmap);
            }

            options["writable"] = call.GetBool("writable", false);
            await daemon.Exports.AddAsync(options).ConfigureAwait(false);
            return null;
        }));
        d.Add(new QmpCommand("nbd-server-remove", [QmpArg.Str("name"), Mode], async call =>
        {
            var name = call.RequireString("name");
            if (daemon.Exports.Find(name) is not { Type: NbdExportType.TypeName })
            {
                throw QmpException.Generic($"Export '{name}' is not found");
            }

            await daemon.Exports.DeleteAsync(name, call.GetString("mode") == "hard").ConfigureAwait(false);
            return null;
        }));
        d.Add(new QmpCommand("block-export-add", [QmpArg.Str("type"), QmpArg.Str("id"), QmpArg.Str("node-name")], async call =>
        {
            await daemon.Exports.AddAsync(call.Arguments).ConfigureAwait(false);
            return null;
        }, Boxed: true));
        d.Add(new QmpCommand("block-export-del", [QmpArg.Str("id"), Mode], async call =>
        {
            await daemon.Exports.DeleteAsync(call.RequireString("id"), call.GetString("mode") == "hard").ConfigureAwait(false);
            return null;
        }));
        d.Add(new QmpCommand("query-block-exports", [], _ =>
        {
            // Newest first, as QEMU lists them.
            var list = daemon.Exports.All.Reverse()
                .Select(e => new BlockExportInfo(e.Id, e.Type, e.Node.NodeName, e.ShuttingDown))
                .ToList();
            return Return(JsonSerializer.SerializeToNode(list, QmpJsonContext.Default.ListBlockExportInfo));
        }, "[BlockExportInfo]"));
    }
}
