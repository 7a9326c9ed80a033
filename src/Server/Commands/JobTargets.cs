using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Formats.Qcow2;
using ExportServer.Server.Qmp;

namespace ExportServer.Server.Commands;

/// <summary>
/// The targets of drive-mirror and drive-backup: a file name, created (mode absolute-paths) or
/// opened as it is (mode existing), then opened as a node of the graph. NBD file names
/// (<c>nbd:host:port[:exportname=E]</c>, <c>nbd://host:port/E</c>, <c>nbd+unix:///E?socket=P</c>)
/// always name an existing export.
/// </summary>
internal static class JobTargets
{
    /// <summary>Creates (unless <paramref name="existing"/>) and opens <paramref name="filename"/> as a <paramref name="format"/> node.</summary>
    public static async ValueTask<BlockNode> OpenAsync(
        CommandContext ctx, string filename, string format, string? nodeName, bool existing, long size, BlockNode? backing)
    {
        var graph = ctx.Daemon.Graph;
        if (nodeName is not null && graph.TryFind(nodeName) is not null)
        {
            throw QmpException.Generic($"Duplicate nodes with node-name='{nodeName}'");
        }

        if (!graph.HasDriver(format))
        {
            throw QmpException.Generic($"Unknown driver '{format}'");
        }

        var protocol = NbdProtocol(filename) ?? new JsonObject { ["driver"] = "file", ["filename"] = filename };
        if (!existing && protocol["driver"]!.GetValue<string>() == "file")
        {
            await CreateAsync(ctx, filename, format, size, backing).ConfigureAwait(false);
        }

        var options = format == protocol["driver"]!.GetValue<string>()
            ? protocol
            : new JsonObject { ["driver"] = format, ["file"] = protocol };
        if (nodeName is not null)
        {
            options["node-name"] = nodeName;
        }

        return await graph.AddAsync(options).ConfigureAwait(false);
    }

    private static async ValueTask CreateAsync(CommandContext ctx, string filename, string format, long size, BlockNode? backing)
    {
        await ImageCreators.CreateAsync(ctx.Daemon, new JsonObject
        {
            ["driver"] = "file",
            ["filename"] = filename,
            ["size"] = format == "qcow2" ? 0 : size,
        }).ConfigureAwait(false);
        if (format == "raw")
        {
            return;
        }

        if (format != "qcow2")
        {
            throw QmpException.Generic($"Driver '{format}' does not support image creation");
        }

        var file = await ctx.Daemon.Graph.AddAsync(new JsonObject { ["driver"] = "file", ["filename"] = filename }).ConfigureAwait(false);
        try
        {
            await Qcow2Creator.CreateAsync(file, new Qcow2CreateOptions
            {
                Size = size,
                BackingFile = backing?.FileName,
                BackingFormat = backing?.DriverName,
            }).ConfigureAwait(false);
        }
        finally
        {
            await ctx.Daemon.Graph.RemoveAsync(file.NodeName).ConfigureAwait(false);
        }
    }

    /// <summary>The nbd driver's options for an NBD file name, or null for a local file.</summary>
    public static JsonObject? NbdProtocol(string filename)
    {
        if (filename.StartsWith("nbd:", StringComparison.Ordinal) && !filename.StartsWith("nbd://", StringComparison.Ordinal))
        {
            // Legacy: nbd:HOST:PORT[:exportname=NAME] or nbd:unix:PATH[:exportname=NAME].
            var parts = filename.Split(':');
            string? export = parts.FirstOrDefault(p => p.StartsWith("exportname=", StringComparison.Ordinal))?["exportname=".Length..];
            var server = parts.Length > 2 && parts[1] == "unix"
                ? new JsonObject { ["type"] = "unix", ["path"] = parts[2] }
                : new JsonObject { ["type"] = "inet", ["host"] = parts[1], ["port"] = parts.Length > 2 ? parts[2] : "10809" };
            return Nbd(server, export);
        }

        if (filename.StartsWith("nbd://", StringComparison.Ordinal) || filename.StartsWith("nbd+unix://", StringComparison.Ordinal))
        {
            var uri = new Uri(filename);
            var export = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/'));
            if (uri.Scheme == "nbd+unix")
            {
                var socket = uri.Query.TrimStart('?').Split('&').Select(q => q.Split('=', 2)).FirstOrDefault(kv => kv[0] == "socket");
                var path = socket is { Length: 2 } ? Uri.UnescapeDataString(socket[1]) : throw QmpException.Generic("nbd+unix URI needs a socket parameter");
                return Nbd(new JsonObject { ["type"] = "unix", ["path"] = path }, export);
            }

            var port = uri.IsDefaultPort || uri.Port < 0 ? 10809 : uri.Port;
            return Nbd(new JsonObject { ["type"] = "inet", ["host"] = uri.Host, ["port"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture) }, export);
        }

        return null;
    }

    private static JsonObject Nbd(JsonObject server, string? export)
    {
        var o = new JsonObject { ["driver"] = "nbd", ["server"] = server };
        if (!string.IsNullOrEmpty(export))
        {
            o["export"] = export;
        }

        return o;
    }
}
