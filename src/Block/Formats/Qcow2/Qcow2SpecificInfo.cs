using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// QAPI ImageInfoSpecificQCow2, as QEMU fills it: a version 2 image shows compat, refcount-bits and
/// compression-type only; the data file fields appear with an external data file, bitmaps with a
/// bitmap directory, encrypt with an encrypted image (its format, and for LUKS the header's description).
/// </summary>
internal sealed record Qcow2SpecificInfo
{
    [JsonPropertyName("compat")]
    public required string Compat { get; init; }

    [JsonPropertyName("data-file")]
    public string? DataFile { get; init; }

    [JsonPropertyName("data-file-raw")]
    public bool? DataFileRaw { get; init; }

    [JsonPropertyName("extended-l2")]
    public bool? ExtendedL2 { get; init; }

    [JsonPropertyName("lazy-refcounts")]
    public bool? LazyRefcounts { get; init; }

    [JsonPropertyName("corrupt")]
    public bool? Corrupt { get; init; }

    [JsonPropertyName("refcount-bits")]
    public required int RefcountBits { get; init; }

    [JsonPropertyName("encrypt")]
    public JsonObject? Encrypt { get; init; }

    [JsonPropertyName("bitmaps")]
    public List<Qcow2BitmapInfo>? Bitmaps { get; init; }

    [JsonPropertyName("compression-type")]
    public required string CompressionType { get; init; }
}
