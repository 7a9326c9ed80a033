using System.Text.Json.Serialization;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>Source-generated JSON for the vmdk records queries show; absent optional fields are left out, as QAPI does.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(VmdkSpecificInfo))]
internal sealed partial class VmdkJsonContext : JsonSerializerContext;
