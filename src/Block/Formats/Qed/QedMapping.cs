namespace ExportServer.Block.Formats.Qed;

/// <summary>What a run of guest clusters maps to: data at <see cref="Host"/> (contiguous), zeroes, or nothing (the backing file shows through).</summary>
internal readonly record struct QedMapping(QedClusterKind Kind, long Host, long Length);
