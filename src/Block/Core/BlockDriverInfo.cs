namespace ExportServer.Block.Core;

/// <summary>QEMU's BlockDriverInfo as queries show it: the cluster size (0: none) and whether the image is marked dirty.</summary>
public sealed record BlockDriverInfo(long ClusterSize, bool IsDirty);
