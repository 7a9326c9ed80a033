using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vhdx;

/// <summary>
/// A read-only view of an image file with its log replayed in memory: what a read-only open of an
/// image left dirty reads, without changing the file (QEMU refuses such an open instead).
/// </summary>
internal sealed class VhdxReplayedFile : BlockNode
{
    private readonly BlockNode _file;
    private readonly List<VhdxLog.Change> _changes;

    public VhdxReplayedFile(BlockNode file, List<VhdxLog.Change> changes, long lastFileOffset)
        : base(file.NodeName + "-replayed", readOnly: true)
    {
        _file = file;
        _changes = changes;
        Length = Math.Max(file.Length, lastFileOffset);
    }

    public override string DriverName => _file.DriverName;

    public override string FileName => _file.FileName;

    /// <summary>The file's bytes (zeroes past its end), then every change of the log over them, in order.</summary>
    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        var inFile = (int)Math.Clamp(_file.Length - offset, 0, buffer.Length);
        if (inFile > 0)
        {
            await _file.ReadAsync(offset, buffer[..inFile]).ConfigureAwait(false);
        }

        buffer.Span[inFile..].Clear();
        var end = offset + buffer.Length;
        foreach (var c in _changes)
        {
            var start = Math.Max(offset, c.Offset);
            var stop = Math.Min(end, c.Offset + c.Length);
            if (start >= stop)
            {
                continue;
            }

            var target = buffer.Span.Slice((int)(start - offset), (int)(stop - start));
            if (c.Data is null)
            {
                target.Clear();
            }
            else
            {
                c.Data.AsSpan((int)(start - c.Offset), target.Length).CopyTo(target);
            }
        }
    }

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags) =>
        throw new BlockException(Errno.EPERM, "vhdx: the replayed view of a read-only image cannot be written");
}
