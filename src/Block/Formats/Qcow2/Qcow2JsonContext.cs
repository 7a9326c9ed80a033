using System.Text.Json.Serialization;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>Source-generated JSON for the qcow2 records queries show; absent optional fields are left out, as QAPI does.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(Qcow2SpecificInfo))]
internal sealed partial class Qcow2JsonContext : JsonSerializerContext;
