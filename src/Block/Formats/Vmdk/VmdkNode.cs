using System.Runtime.CompilerServices;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// A VMDK image as a block node: its extents laid end to end, a parent named by the descriptor as
/// the backing node (checked by CID before its data is used, as QEMU does), and the descriptor,
/// whose CID changes on the first write after open so that children made from the old state stop
/// trusting it. Writes are in VmdkNode.Write.cs, query information in VmdkNode.Info.cs.
/// </summary>
internal sealed partial class VmdkNode : BlockNode
{
    private readonly BlockNode _file;
    private readonly VmdkExtent[] _extents;
    private readonly VmdkDescriptor? _descriptor;
    private readonly VmdkDescriptorLocation? _descriptorLocation;
    private bool _parentChecked;

    public VmdkNode(
        string nodeName, bool readOnly, BlockNode file, VmdkExtent[] extents, string createType,
        VmdkDescriptor? descriptor, VmdkDescriptorLocation? descriptorLocation)
        : base(nodeName, readOnly)
    {
        _file = file;
        _extents = extents;
        _descriptor = descriptor;
        _descriptorLocation = descriptorLocation;
        CreateType = createType;
        Cid = descriptor?.Cid ?? 0;
        ParentCid = descriptor?.ParentCid ?? VmdkFormat.NoParentCid;
        Length = extents.Length == 0 ? 0 : extents[^1].End;
        var grain = extents.FirstOrDefault(e => !e.IsFlat)?.GrainSize ?? 0;
        Limits = new BlockLimits(OptimalTransfer: (int)grain);
        Capabilities = new BlockCapabilities(
            WriteZeroes: true,
            CompressedWriteSize: extents.Any(e => e.IsCompressed) ? (int)grain : 0,
            Backing: true);
        AttachChild("file", ChildRole.File, file, ChildUse.Metadata);
        var index = 0;
        foreach (var extentFile in extents.Select(e => e.File).Distinct().Where(f => f != file))
        {
            AttachChild($"extents.{index++}", ChildRole.Other, extentFile, ChildUse.Data);
        }
    }

    public override string DriverName => "vmdk";

    public string CreateType { get; }

    /// <summary>This layer's content ID; a child records it as its parentCID.</summary>
    public uint Cid { get; private set; }

    public uint ParentCid { get; }

    public IReadOnlyList<VmdkExtent> Extents => _extents;

    internal void AttachBacking(BlockNode backing) => AttachChild("backing", ChildRole.Backing, backing);

    private VmdkExtent FindExtent(long offset)
    {
        // Few extents, and requests mostly stay in one: a linear search from the first is enough.
        foreach (var e in _extents)
        {
            if (offset < e.End)
            {
                return e;
            }
        }

        throw BlockException.Io($"vmdk: offset {offset} is beyond the last extent of '{FileName}'");
    }

    /// <summary>The mapping of the first bytes of [offset, offset+length), inside one extent and one grain.</summary>
    private async ValueTask<(VmdkExtent Extent, VmdkGrain Grain)> MapAsync(long offset, long length)
    {
        var extent = FindExtent(offset);
        var grain = await extent.MapAsync(offset - extent.Start, Math.Min(length, extent.End - offset)).ConfigureAwait(false);
        return (extent, grain);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer)
    {
        while (buffer.Length > 0)
        {
            var (extent, m) = await MapAsync(offset, buffer.Length).ConfigureAwait(false);
            var part = buffer[..(int)m.Length];
            switch (m.Kind)
            {
                case VmdkGrainKind.Unallocated:
                    await ReadBelowAsync(offset, part).ConfigureAwait(false);
                    break;
                case VmdkGrainKind.Zero:
                    part.Span.Clear();
                    break;
                case VmdkGrainKind.Data:
                    await ReadHostAsync(extent.File, m.HostOffset, part).ConfigureAwait(false);
                    break;
                case VmdkGrainKind.Compressed:
                    var sparse = (VmdkSparseExtent)extent;
                    await sparse.ReadCompressedAsync(m.HostOffset, (offset - extent.Start) % sparse.Layout.GrainBytes, part).ConfigureAwait(false);
                    break;
            }

            offset += part.Length;
            buffer = buffer[part.Length..];
        }
    }

    /// <summary>Data stored in an extent's file; what lies past the file's end reads as zeroes.</summary>
    private static async ValueTask ReadHostAsync(BlockNode file, long host, Memory<byte> buffer)
    {
        var n = (int)Math.Clamp(file.Length - host, 0, buffer.Length);
        if (n > 0)
        {
            await file.ReadAsync(host, buffer[..n]).ConfigureAwait(false);
        }

        buffer.Span[n..].Clear();
    }

    /// <summary>What the image shows under this layer: the parent's data (once its CID is checked), zeroes past its end or without one.</summary>
    private async ValueTask ReadBelowAsync(long offset, Memory<byte> buffer)
    {
        var backing = BackingChild?.Node;
        if (backing is null)
        {
            buffer.Span.Clear();
            return;
        }

        CheckParentCid();
        var n = (int)Math.Clamp(backing.Length - offset, 0, buffer.Length);
        if (n > 0)
        {
            await backing.ReadAsync(offset, buffer[..n]).ConfigureAwait(false);
        }

        buffer.Span[n..].Clear();
    }

    /// <summary>
    /// QEMU's vmdk_is_cid_valid: the parent must be a vmdk image whose CID is this layer's parentCID;
    /// checked at the first use of the parent's data.
    /// </summary>
    private void CheckParentCid()
    {
        if (_parentChecked || BackingLayer is not { } parent)
        {
            return;
        }

        if (parent is not VmdkNode vmdk)
        {
            throw BlockException.Invalid($"vmdk: the parent of '{FileName}' is a {parent.DriverName} image, which has no CID to check parentCID {ParentCid:x8} against");
        }

        if (vmdk.Cid != ParentCid)
        {
            throw BlockException.Invalid(
                $"vmdk: '{FileName}' was made from another state of its parent: its parentCID is {ParentCid:x8}, the CID of '{vmdk.FileName}' is {vmdk.Cid:x8}");
        }

        _parentChecked = true;
    }

    /// <summary>
    /// This layer only: unallocated grains are reported without Allocated so the caller asks the
    /// parent; a flat extent reports its file's holes as zeroes (QEMU's BDRV_BLOCK_RECURSE).
    /// </summary>
    protected override async ValueTask<BlockStatus> GetBlockStatusCoreAsync(long offset, long length)
    {
        var (extent, m) = await MapAsync(offset, length).ConfigureAwait(false);
        if (extent.IsFlat)
        {
            var file = await extent.File.GetBlockStatusAsync(m.HostOffset, m.Length).ConfigureAwait(false);
            var zero = file.IsZero ? BlockStatusFlags.Zero : BlockStatusFlags.None;
            return new BlockStatus(file.Length, BlockStatusFlags.Allocated | BlockStatusFlags.Data | zero);
        }

        var flags = m.Kind switch
        {
            VmdkGrainKind.Unallocated => BlockStatusFlags.None,
            VmdkGrainKind.Zero => BlockStatusFlags.Allocated | BlockStatusFlags.Zero,
            _ => BlockStatusFlags.Allocated | BlockStatusFlags.Data,
        };
        return new BlockStatus(m.Length, flags);
    }

    protected override async ValueTask FlushCoreAsync()
    {
        if (!IsReadOnly)
        {
            foreach (var e in _extents)
            {
                await e.WriteBackAsync().ConfigureAwait(false);
            }
        }

        foreach (var f in _extents.Select(e => e.File).Append(_file).Distinct())
        {
            await f.FlushAsync().ConfigureAwait(false);
        }
    }

    protected override async ValueTask DisposeCoreAsync()
    {
        if (!IsReadOnly)
        {
            foreach (var e in _extents)
            {
                await e.CloseAsync().ConfigureAwait(false);
            }

            await FlushCoreAsync().ConfigureAwait(false);
        }
    }
}
