using System.Buffers;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// A LUKS image as a block node: the payload after the header and key material, each 512-byte
/// sector encrypted with the master key and an IV from its number counted from the payload start.
/// Requests are whole sectors (the common path aligns them); a write encrypts into a pooled copy.
/// </summary>
internal sealed class LuksNode : BlockNode, IImageInfoSource, IAmendableNode
{
    /// <summary>The largest request the node takes at once (QEMU's crypto driver bounds its bounce buffer so).</summary>
    private const int MaxRequest = 1024 * 1024;

    private readonly BlockNode _file;
    private readonly LuksVolume _volume;
    private readonly LuksSectorCipher _cipher;

    public LuksNode(string nodeName, bool readOnly, BlockNode file, LuksVolume volume, LuksSectorCipher cipher)
        : base(nodeName, readOnly)
    {
        _file = file;
        _volume = volume;
        _cipher = cipher;
        Length = Math.Max(0, file.Length - volume.Header.PayloadOffset);
        Limits = new BlockLimits(RequestAlignment: cipher.SectorSize, MaxTransfer: MaxRequest);
        Capabilities = new BlockCapabilities(Fua: true, Truncate: file.CanTruncate);
        AttachChild("file", ChildRole.File, file, ChildUse.Metadata);
    }

    public override string DriverName => "luks";

    /// <summary>QEMU's block_crypto_get_info: the file's cluster size.</summary>
    public BlockDriverInfo? DriverInfo => ImageInfoQuery.DriverInfo(_file);

    /// <summary>QEMU's QCryptoBlockInfoLUKS.</summary>
    public FormatSpecificInfo? SpecificInfo => new("luks", _volume.Describe());

    public bool Encrypted => true;

    /// <summary>Key slots added or erased (QAPI BlockdevAmendOptionsLUKS).</summary>
    public ValueTask AmendAsync(OptionReader options, NamedObjects objects, bool force)
    {
        if (IsReadOnly)
        {
            throw new BlockException(Errno.EPERM, $"Node '{NodeName}' is read only");
        }

        return _volume.AmendAsync(options, objects, force);
    }

    private long Sector(long offset) => offset / _cipher.SectorSize;

    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        await _file.ReadAsync(_volume.Header.PayloadOffset + offset, buffer).ConfigureAwait(false);
        _cipher.Decrypt(Sector(offset), buffer.Span);
    }

    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        var copy = ArrayPool<byte>.Shared.Rent(buffer.Length);
        try
        {
            var data = copy.AsMemory(0, buffer.Length);
            buffer.CopyTo(data);
            _cipher.Encrypt(Sector(offset), data.Span);
            await _file.WriteAsync(_volume.Header.PayloadOffset + offset, data, flags & WriteFlags.Fua).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(copy);
        }
    }

    protected override async ValueTask TruncateCoreAsync(long length)
    {
        if (length % _cipher.SectorSize != 0)
        {
            throw BlockException.Invalid($"The new size must be a multiple of {_cipher.SectorSize}");
        }

        await _file.TruncateAsync(_volume.Header.PayloadOffset + length).ConfigureAwait(false);
        Length = length;
    }

    protected override ValueTask DisposeCoreAsync()
    {
        _cipher.Dispose();
        return ValueTask.CompletedTask;
    }
}
