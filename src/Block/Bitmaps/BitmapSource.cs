namespace ExportServer.Block.Bitmaps;

/// <summary>A source of block-dirty-bitmap-merge: a bitmap of the target's node by name, or of any node (<paramref name="Node"/> set).</summary>
public sealed record BitmapSource(string? Node, string Name);
