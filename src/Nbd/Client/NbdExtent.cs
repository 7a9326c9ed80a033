namespace ExportServer.Nbd.Client;

/// <summary>The first extent a BLOCK_STATUS reply gave for the context asked: its length and the context's state bits.</summary>
internal readonly record struct NbdExtent(long Length, uint Flags);
