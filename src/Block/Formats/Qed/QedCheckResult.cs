namespace ExportServer.Block.Formats.Qed;

/// <summary>What a consistency check found: bad or shared offsets left as they are, clusters no table references, entries repaired.</summary>
internal readonly record struct QedCheckResult(int Corruptions, long Leaks, int Repaired);
