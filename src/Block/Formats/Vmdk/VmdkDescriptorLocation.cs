namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// Where an image's descriptor lives, to rewrite its CID: a descriptor file (offset 0, the text is
/// the whole file) or the space reserved inside a sparse extent (<paramref name="Capacity"/> bytes).
/// </summary>
internal sealed record VmdkDescriptorLocation(Core.BlockNode File, long Offset, long Capacity, bool IsFile);
