using System.Buffers;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// A LUKS image as a block node: the payload after the header and key material, each sector (512
/// bytes, or a LUKS2 segment's 4096) encrypted with the master key and an IV from its place counted
/// from the payload start. Requests are whole sectors (the common path aligns them); a write encrypts
/// into a pooled copy.
/// </summary>
internal sealed class LuksNode : BlockNode, IImageInfoSource, IAmendableNode
{
    /// <summary>The largest request the node takes at once (QEMU's crypto driver bounds its bounce buffer so).</summary>
    private const int MaxRequest = 1024 * 1024;

    private readonly BlockNode _file;
    private readonly LuksPayload _payload;
    private readonly LuksSectorCipher _cipher;
    private readonly LuksVolume? _volume;
    private readonly JsonObject? _info;

    /// <summary>A LUKS1 image: its key slots can be amended, and its info follows them.</summary>
    public LuksNode(string nodeName, bool readOnly, BlockNode file, LuksVolume volume, LuksSectorCipher cipher)
        : this(nodeName, readOnly, file, new LuksPayload(volume.Header.PayloadOffset, null, 1), cipher)
    {
        _volume = volume;
    }

    /// <summary>A LUKS2 image, described by <paramref name="info"/> in QEMU's LUKS1 terms; its header is only read.</summary>
    public LuksNode(string nodeName, bool readOnly, BlockNode file, LuksPayload payload, LuksSectorCipher cipher, JsonObject info)
        : this(nodeName, readOnly, file, payload, cipher)
    {
        _info = info;
    }

    private LuksNode(string nodeName, bool readOnly, BlockNode file, LuksPayload payload, LuksSectorCipher cipher)
        : base(nodeName, readOnly)
    {
        _file = file;
        _payload = payload;
        _cipher = cipher;
        Length = payload.LengthIn(file.Length);
        Limits = new BlockLimits(RequestAlignment: cipher.SectorSize, MaxTransfer: MaxRequest);
        Capabilities = new BlockCapabilities(Fua: true, Truncate: file.CanTruncate && payload.FixedLength is null);
        AttachChild("file", ChildRole.File, file, ChildUse.Metadata);
    }

    public override string DriverName => "luks";

    /// <summary>QEMU's block_crypto_get_info: the file's cluster size.</summary>
    public BlockDriverInfo? DriverInfo => ImageInfoQuery.DriverInfo(_file);

    /// <summary>QEMU's QCryptoBlockInfoLUKS.</summary>
    public FormatSpecificInfo? SpecificInfo => new("luks", _volume?.Describe() ?? (JsonObject)_info!.DeepClone());

    public bool Encrypted => true;

    /// <summary>Key slots added or erased (QAPI BlockdevAmendOptionsLUKS); LUKS1 only.</summary>
    public ValueTask AmendAsync(OptionReader options, NamedObjects objects, bool force)
    {
        if (IsReadOnly)
        {
            throw new BlockException(Errno.EPERM, $"Node '{NodeName}' is read only");
        }

        return _volume is null
            ? throw BlockException.NotSupported($"Node '{NodeName}': key slots of a LUKS2 image cannot be amended")
            : _volume.AmendAsync(options, objects, force);
    }

    private long Sector(long offset) => offset / _cipher.SectorSize;

    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        await _file.ReadAsync(_payload.Offset + offset, buffer).ConfigureAwait(false);
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
            await _file.WriteAsync(_payload.Offset + offset, data, flags & WriteFlags.Fua).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(copy);
        }
    }

    protected override async ValueTask TruncateCoreAsync(long length)
    {
        if (_payload.FixedLength is not null)
        {
            throw BlockException.NotSupported("luks: a LUKS2 segment of fixed size cannot be resized");
        }

        if (length % _cipher.SectorSize != 0)
        {
            throw BlockException.Invalid($"The new size must be a multiple of {_cipher.SectorSize}");
        }

        await _file.TruncateAsync(_payload.Offset + length).ConfigureAwait(false);
        Length = length;
    }

    protected override ValueTask DisposeCoreAsync()
    {
        _cipher.Dispose();
        return ValueTask.CompletedTask;
    }
}
