using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Raw;

/// <summary>
/// Passes every request to its 'file' child, shifted by the window's offset. With a fixed size the
/// node cannot be resized; without one its length follows the child's.
/// </summary>
internal sealed class RawNode : BlockNode, IImageInfoSource, IFileExtentSource
{
    private readonly BlockNode _file;
    private readonly long _offset;
    private readonly bool _fixedSize;

    public RawNode(string nodeName, bool readOnly, BlockNode file, long offset, long? size)
        : base(nodeName, readOnly)
    {
        _file = file;
        _offset = offset;
        _fixedSize = size.HasValue;
        Length = size ?? file.Length - offset;
        Limits = file.Limits;
        Capabilities = new BlockCapabilities(
            Fua: true, WriteZeroes: true, FastZero: file.CanFastZero, Truncate: !_fixedSize && file.CanTruncate);
        AttachChild("file", ChildRole.File, file, offset != 0 || size.HasValue ? ChildUse.Data : ChildUse.Filtered);
    }

    public override string DriverName => "raw";

    /// <summary>QEMU's raw_get_info asks the file.</summary>
    public BlockDriverInfo? DriverInfo => ImageInfoQuery.DriverInfo(_file);

    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer) =>
        _file.ReadAsync(_offset + offset, buffer);

    bool IFileExtentSource.TryLeaseExtent(long offset, int length, out FileExtent extent) =>
        _file.TryLeaseFileExtent(_offset + offset, length, out extent);

    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags) =>
        _file.WriteAsync(_offset + offset, buffer, flags);

    protected override ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags) =>
        _file.WriteZeroesAsync(_offset + offset, length, flags);

    protected override ValueTask DiscardCoreAsync(long offset, long length) =>
        _file.DiscardAsync(_offset + offset, length);

    protected override ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length) =>
        _file.GetBlockStatusAsync(_offset + offset, length);

    protected override async ValueTask TruncateCoreAsync(long length)
    {
        if (_fixedSize)
        {
            throw BlockException.NotSupported("Cannot resize fixed-size raw disks");
        }

        if (long.MaxValue - length < _offset)
        {
            throw BlockException.Invalid("Disk size too large for the chosen offset");
        }

        await _file.TruncateAsync(_offset + length).ConfigureAwait(false);
        Length = length;
    }
}
