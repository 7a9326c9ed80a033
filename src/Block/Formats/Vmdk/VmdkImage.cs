namespace ExportServer.Block.Formats.Vmdk;

/// <summary>What opening an image's files found: its extents in order, its create type and its descriptor (if any) and where it lives.</summary>
internal sealed record VmdkImage(VmdkExtent[] Extents, string CreateType, VmdkDescriptor? Descriptor, VmdkDescriptorLocation? DescriptorLocation);
