using ExportServer.Block.Core;
using ExportServer.Block.Filters;

namespace ExportServer.Block.Jobs;

/// <summary>
/// The node a block job puts above its source while it runs (QEMU's mirror_top, commit_top,
/// copy-on-read for stream, copy-before-write for backup): the source's users reach it through this
/// node, which passes every request on unchanged. What the job does with those requests (dirty
/// tracking, copy-before-write, write-blocking) hangs on the source's write notifiers, so it also
/// covers writes that reach the source another way. commit_top is always read-only: QEMU opens it
/// without write access, since what it sits on is a layer the commit is about to drop.
/// </summary>
internal sealed class JobFilterNode(string nodeName, string driverName, BlockNode source)
    : FilterNode(nodeName, source.IsReadOnly || driverName == "commit_top", source)
{
    public override string DriverName => driverName;
}
