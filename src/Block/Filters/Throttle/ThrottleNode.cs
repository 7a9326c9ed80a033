using System.Text.Json;
using System.Text.Encodings.Web;
using ExportServer.Block.Core;

namespace ExportServer.Block.Filters.Throttle;

/// <summary>
/// QEMU's throttle filter: reads, writes, zero writes and discards wait for their group's
/// buckets before going to the child (zeroes and discards count as writes); flushes and block
/// status pass freely. The node is a member of its group from open to close.
/// </summary>
internal sealed class ThrottleNode : FilterNode
{
    private readonly ThrottleGroup _group;

    public ThrottleNode(string nodeName, bool readOnly, BlockNode child, ThrottleGroup group)
        : base(nodeName, readOnly, child)
    {
        _group = group;
        group.AddMember();
    }

    public override string DriverName => "throttle";

    /// <summary>
    /// QEMU names a filter by its options, in its JSON spacing:
    /// json:{"throttle-group": "g", "driver": "throttle", "file": {"driver": "file", "filename": "x"}}.
    /// </summary>
    public override string FileName
    {
        get
        {
            var childName = Child.FileName;
            var file = childName switch
            {
                _ when childName.StartsWith("json:", StringComparison.Ordinal) => childName["json:".Length..],
                _ when childName == Child.DriverName + "://" => $"{{\"driver\": {Quote(Child.DriverName)}}}",
                _ => $"{{\"driver\": {Quote(Child.DriverName)}, \"filename\": {Quote(childName)}}}",
            };
            return $"json:{{\"throttle-group\": {Quote(_group.Id)}, \"driver\": \"throttle\", \"file\": {file}}}";
        }
    }

    private static string Quote(string s) => "\"" + JsonEncodedText.Encode(s, JavaScriptEncoder.UnsafeRelaxedJsonEscaping) + "\"";

    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        await _group.WaitAsync(buffer.Length, isWrite: false).ConfigureAwait(false);
        await Child.ReadAsync(offset, buffer).ConfigureAwait(false);
    }

    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        await _group.WaitAsync(buffer.Length, isWrite: true).ConfigureAwait(false);
        await Child.WriteAsync(offset, buffer, flags).ConfigureAwait(false);
    }

    protected override async ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags)
    {
        await _group.WaitAsync(length, isWrite: true).ConfigureAwait(false);
        await Child.WriteZeroesAsync(offset, length, flags).ConfigureAwait(false);
    }

    protected override async ValueTask DiscardCoreAsync(long offset, long length)
    {
        await _group.WaitAsync(length, isWrite: true).ConfigureAwait(false);
        await Child.DiscardAsync(offset, length).ConfigureAwait(false);
    }

    protected override ValueTask DisposeCoreAsync()
    {
        _group.RemoveMember();
        return ValueTask.CompletedTask;
    }
}
