using System.Text.Json.Nodes;

namespace ExportServer.Block.Core;

/// <summary>
/// Opt-in for protocol drivers whose storage a file name can name (QEMU's protocol_name and
/// bdrv_parse_filename: <c>nbd://host/export</c>). A name no protocol claims is a local file.
/// </summary>
public interface IProtocolFileNames
{
    /// <summary>The driver's options for <paramref name="fileName"/>, or null when the name is not this protocol's.</summary>
    JsonObject? ParseFileName(string fileName);
}
