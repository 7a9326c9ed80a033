using System.Globalization;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;

namespace ExportServer.Nbd.Client;

/// <summary>
/// The file names that name an NBD export (QEMU's nbd_parse_filename), for drive-mirror and
/// drive-backup targets: URIs (<c>nbd://host:port/E</c>, <c>nbd+unix:///E?socket=P</c>) and the legacy
/// <c>nbd:host:port[:exportname=E]</c> or <c>nbd:unix:PATH[:exportname=E]</c>.
/// </summary>
public sealed partial class NbdDriver : IProtocolFileNames
{
    private const string ExportNamePrefix = "exportname=";

    public JsonObject? ParseFileName(string fileName)
    {
        if (!fileName.StartsWith("nbd", StringComparison.Ordinal))
        {
            return null;
        }

        if (fileName.Contains("://", StringComparison.Ordinal))
        {
            return NbdUri.TryParse(fileName, out var options) ? options : throw BlockException.Invalid("No valid URL specified");
        }

        return fileName.StartsWith("nbd:", StringComparison.Ordinal) ? ParseLegacy(fileName) : null;
    }

    private static JsonObject ParseLegacy(string fileName)
    {
        var parts = fileName.Split(':');
        var export = parts.FirstOrDefault(p => p.StartsWith(ExportNamePrefix, StringComparison.Ordinal))?[ExportNamePrefix.Length..];
        var server = parts.Length > 2 && parts[1] == "unix"
            ? new JsonObject { ["type"] = "unix", ["path"] = parts[2] }
            : new JsonObject { ["type"] = "inet", ["host"] = parts[1], ["port"] = parts.Length > 2 && !parts[2].StartsWith(ExportNamePrefix, StringComparison.Ordinal)
                ? parts[2]
                : NbdServerAddress.DefaultPort.ToString(CultureInfo.InvariantCulture) };
        var options = new JsonObject { ["driver"] = "nbd", ["server"] = server };
        if (!string.IsNullOrEmpty(export))
        {
            options["export"] = export;
        }

        return options;
    }
}
