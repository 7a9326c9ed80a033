using System.Buffers;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// A LUKS image as a block node: the payload after the header and key material, each 512-byte
/// sector encrypted with the master key and an IV from its number counted from the payload start.
/// Requests are whole sectors (the common path aligns them); a write encrypts into a pooled copy.
/// </summary>
internal sealed class LuksNode : BlockNode, IImageInfoSource
{
    /// <summary>The largest request the node takes at once (QEMU's crypto driver bounds its bounce buffer so).</summary>
    private const int MaxRequest = 1024 * 1024;

    private readonly BlockNode _file;
    private readonly LuksHeader _header;
    private readonly LuksCipherSpec _spec;
    private readonly LuksSectorCipher _cipher;

    public LuksNode(string nodeName, bool readOnly, BlockNode file, LuksHeader header, LuksCipherSpec spec, LuksSectorCipher cipher)
        : base(nodeName, readOnly)
    {
        _file = file;
        _header = header;
        _spec = spec;
        _cipher = cipher;
        Length = Math.Max(0, file.Length - header.PayloadOffset);
        Limits = new BlockLimits(RequestAlignment: cipher.SectorSize, MaxTransfer: MaxRequest);
        Capabilities = new BlockCapabilities(Fua: true, Truncate: file.CanTruncate);
        AttachChild("file", ChildRole.File, file, ChildUse.Metadata);
    }

    public override string DriverName => "luks";

    /// <summary>QEMU's block_crypto_get_info: the file's cluster size.</summary>
    public BlockDriverInfo? DriverInfo => ImageInfoQuery.DriverInfo(_file);

    /// <summary>QEMU's QCryptoBlockInfoLUKS.</summary>
    public FormatSpecificInfo? SpecificInfo => new("luks", Describe());

    private JsonObject Describe()
    {
        var slots = new JsonArray();
        foreach (var slot in _header.Slots)
        {
            var entry = new JsonObject { ["active"] = slot.Active };
            if (slot.Active)
            {
                entry["iters"] = slot.Iterations;
            }

            entry["key-offset"] = (long)slot.KeyOffsetSector * LuksFormat.SectorSize;
            if (slot.Active)
            {
                entry["stripes"] = slot.Stripes;
            }

            slots.Add((JsonNode)entry);
        }

        var data = new JsonObject
        {
            ["ivgen-alg"] = _spec.IvGen == LuksIvGen.None ? null : _spec.IvGenName,
            ["hash-alg"] = _header.HashSpec,
            ["cipher-alg"] = _spec.CipherAlg,
            ["uuid"] = _header.Uuid,
            ["cipher-mode"] = _spec.ModeName,
            ["slots"] = slots,
            ["payload-offset"] = _header.PayloadOffset,
            ["master-key-iters"] = _header.DigestIterations,
        };
        if (_spec.IvHash is { } ivHash)
        {
            data["ivgen-hash-alg"] = ivHash.Name;
        }

        if (_spec.IvGen == LuksIvGen.None)
        {
            data.Remove("ivgen-alg");
        }

        return data;
    }

    private long Sector(long offset) => offset / _cipher.SectorSize;

    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        await _file.ReadAsync(_header.PayloadOffset + offset, buffer).ConfigureAwait(false);
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
            await _file.WriteAsync(_header.PayloadOffset + offset, data, flags & WriteFlags.Fua).ConfigureAwait(false);
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

        await _file.TruncateAsync(_header.PayloadOffset + length).ConfigureAwait(false);
        Length = length;
    }

    protected override ValueTask DisposeCoreAsync()
    {
        _cipher.Dispose();
        return ValueTask.CompletedTask;
    }
}
