using System.Text.Json.Nodes;

namespace ExportServer.Block.Core;

/// <summary>QAPI ImageInfoSpecific: the format's name and its own record, already in QEMU's JSON shape.</summary>
public sealed record FormatSpecificInfo(string Type, JsonNode Data);
