namespace ExportServer.Block.Filters.Throttle;

/// <summary>The six leaky buckets of a throttle configuration, in QEMU's order (which decides which error is reported first).</summary>
internal enum ThrottleBucketKind
{
    BpsTotal,
    BpsRead,
    BpsWrite,
    IopsTotal,
    IopsRead,
    IopsWrite,
}
