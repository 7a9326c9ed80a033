namespace ExportServer.Block.Core;

/// <summary>An edge of the graph: <paramref name="Name"/> is QEMU's child name ("file", "backing", "data-file").</summary>
public sealed record BlockChild(string Name, ChildRole Role, BlockNode Node);
