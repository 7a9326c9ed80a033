using System.Text.Json.Serialization;
using ExportServer.Server.Qmp.Types;

namespace ExportServer.Server.Qmp;

/// <summary>Source-generated serialization of every QMP reply record (no reflection at run time).</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(QmpGreeting))]
[JsonSerializable(typeof(VersionInfo))]
[JsonSerializable(typeof(List<CommandInfo>))]
[JsonSerializable(typeof(List<BlockDeviceInfo>))]
[JsonSerializable(typeof(List<BlockExportInfo>))]
[JsonSerializable(typeof(List<BlockStatsInfo>))]
[JsonSerializable(typeof(List<JobInfo>))]
[JsonSerializable(typeof(List<BlockJobInfo>))]
[JsonSerializable(typeof(JobStatusChangeEvent))]
[JsonSerializable(typeof(BlockJobEvent))]
[JsonSerializable(typeof(BlockJobErrorEvent))]
[JsonSerializable(typeof(List<SchemaInfo>))]
[JsonSerializable(typeof(SnapshotInfo))]
[JsonSerializable(typeof(QmpEventMessage))]
[JsonSerializable(typeof(QmpErrorBody))]
internal sealed partial class QmpJsonContext : JsonSerializerContext;
