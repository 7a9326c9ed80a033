using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.Server.Daemon;
using ExportServer.Server.Qmp;
using ExportServer.Server.Qmp.Types;

namespace ExportServer.Server.Commands;

/// <summary>qapi/control.json and introspection: negotiation, version, command list, schema, quit.</summary>
internal static class ControlCommands
{
    public static void Register(QmpDispatcher d, StorageDaemon daemon)
    {
        d.Add(new QmpCommand(QmpDispatcher.CapabilitiesCommand, [QmpArg.List("enable", optional: true)], call =>
        {
            if (call.Arguments["enable"] is JsonArray enable)
            {
                foreach (var cap in enable)
                {
                    if (cap?.GetValueKind() != JsonValueKind.String || cap.GetValue<string>() != "oob")
                    {
                        throw QmpException.Generic($"Parameter 'enable' does not accept value '{cap}'");
                    }
                }
            }

            call.Session?.CompleteNegotiation();
            return Empty();
        }));
        d.Add(new QmpCommand("query-version", [], _ =>
            Return(JsonSerializer.SerializeToNode(VersionInfo.Current, QmpJsonContext.Default.VersionInfo)), "VersionInfo"));
        d.Add(new QmpCommand("query-commands", [], _ =>
        {
            var list = d.Commands.SelectMany(c => c.Aliases.Prepend(c.Name)).Select(n => new CommandInfo(n)).ToList();
            return Return(JsonSerializer.SerializeToNode(list, QmpJsonContext.Default.ListCommandInfo));
        }, "[CommandInfo]"));
        d.Add(new QmpCommand("query-qmp-schema", [], _ =>
            Return(JsonSerializer.SerializeToNode(QmpSchema.Build(d.Commands), QmpJsonContext.Default.ListSchemaInfo)), "[SchemaInfo]"));
        d.Add(new QmpCommand("quit", [], call =>
        {
            call.AfterReply = daemon.RequestQuit;
            return Empty();
        }));
    }

    public static ValueTask<JsonNode?> Empty() => ValueTask.FromResult<JsonNode?>(null);

    public static ValueTask<JsonNode?> Return(JsonNode? value) => ValueTask.FromResult(value);
}
