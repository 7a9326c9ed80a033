using System.Text.Json.Serialization;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// QAPI Qcow2BitmapInfo: a bitmap as the image's directory holds it, flags "in-use" and "auto";
/// members in the order qemu-storage-daemon writes them.
/// </summary>
internal sealed record Qcow2BitmapInfo(
    [property: JsonPropertyName("flags")] List<string> Flags,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("granularity")] long Granularity);
