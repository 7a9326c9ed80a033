using System.Buffers;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// Writes and zero writes, extent by extent and grain by grain. The first write after open gives
/// the image a new CID (QEMU's vmdk_write_cid), written into the descriptor in place.
/// </summary>
internal sealed partial class VmdkNode
{
    private readonly SemaphoreSlim _cidLock = new(1, 1);
    private bool _cidUpdated;

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, WriteFlags flags)
    {
        await UpdateCidAsync().ConfigureAwait(false);
        while (buffer.Length > 0)
        {
            var (extent, m) = await MapAsync(offset, buffer.Length).ConfigureAwait(false);
            var part = buffer[..(int)m.Length];
            if (extent is VmdkSparseExtent sparse)
            {
                CheckWritable(sparse);
                await sparse.WriteAsync(offset - extent.Start, part, ReadBelowAsync).ConfigureAwait(false);
            }
            else
            {
                await extent.File.WriteAsync(m.HostOffset, part).ConfigureAwait(false);
            }

            offset += part.Length;
            buffer = buffer[part.Length..];
        }
    }

    /// <summary>
    /// Zeroes: flat extents pass them to their file; a grain that already reads as zeroes is left
    /// alone; whole grains of an extent with zeroed grains are marked so; the rest is written as zeroes.
    /// </summary>
    protected override async ValueTask WriteZeroesCoreAsync(long offset, long length, ZeroFlags flags)
    {
        await UpdateCidAsync().ConfigureAwait(false);
        while (length > 0)
        {
            var (extent, m) = await MapAsync(offset, length).ConfigureAwait(false);
            if (extent is VmdkSparseExtent sparse)
            {
                CheckWritable(sparse);
                var readsZero = m.Kind == VmdkGrainKind.Zero || (m.Kind == VmdkGrainKind.Unallocated && BackingChild is null);
                if (!readsZero && !(m.Length == sparse.Layout.GrainBytes && await sparse.TryZeroGrainAsync(offset - extent.Start, (flags & ZeroFlags.MayUnmap) != 0).ConfigureAwait(false)))
                {
                    var zeroes = ArrayPool<byte>.Shared.Rent((int)m.Length);
                    try
                    {
                        Array.Clear(zeroes, 0, (int)m.Length);
                        await sparse.WriteAsync(offset - extent.Start, zeroes.AsMemory(0, (int)m.Length), ReadBelowAsync).ConfigureAwait(false);
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(zeroes);
                    }
                }
            }
            else
            {
                await extent.File.WriteZeroesAsync(m.HostOffset, m.Length, flags & ~ZeroFlags.Fua).ConfigureAwait(false);
            }

            offset += m.Length;
            length -= m.Length;
        }
    }

    /// <summary>
    /// Discard, with discard=unmap: whole allocated grains of seSparse extents become unmapped
    /// (reading as zeroes); other extents have no way to give grains back and are left alone.
    /// </summary>
    protected override async ValueTask DiscardCoreAsync(long offset, long length)
    {
        if (!DiscardUnmap)
        {
            return;
        }

        foreach (var extent in _extents.OfType<VmdkSparseExtent>().Where(e => e.Layout.Kind == VmdkSparseKind.SeSparse))
        {
            var start = Math.Max(offset, extent.Start);
            var end = Math.Min(offset + length, extent.End);
            if (start < end)
            {
                CheckWritable(extent);
                await UpdateCidAsync().ConfigureAwait(false);
                await extent.UnmapAsync(start - extent.Start, end - start).ConfigureAwait(false);
            }
        }
    }

    private static void CheckWritable(VmdkSparseExtent extent)
    {
        if (extent.WriteRefusal is { } reason)
        {
            throw BlockException.NotSupported(reason);
        }
    }

    /// <summary>Gives the image a new random CID before its first change after open.</summary>
    private async ValueTask UpdateCidAsync()
    {
        if (Volatile.Read(ref _cidUpdated) || _descriptor is null || _descriptorLocation is null)
        {
            return;
        }

        await _cidLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_cidUpdated)
            {
                return;
            }

            var old = Encoding.UTF8.GetByteCount(_descriptor.Text);
            var cid = (uint)RandomNumberGenerator.GetInt32(int.MaxValue);
            var text = Encoding.UTF8.GetBytes(_descriptor.WithCid(cid));
            var location = _descriptorLocation;
            if (!location.IsFile && text.Length > location.Capacity)
            {
                throw BlockException.Io(string.Create(CultureInfo.InvariantCulture,
                    $"vmdk: the descriptor of '{FileName}' no longer fits its {location.Capacity} bytes"));
            }

            // Same length or padded with NULs over the old text: the descriptor is rewritten in place.
            var bytes = new byte[Math.Max(text.Length, location.IsFile ? text.Length : old)];
            text.CopyTo(bytes, 0);
            if (location.File.Length < location.Offset + bytes.Length)
            {
                await location.File.TruncateAsync(location.Offset + bytes.Length).ConfigureAwait(false);
            }

            await location.File.WriteAsync(location.Offset, bytes).ConfigureAwait(false);
            if (location.IsFile && location.File.Length > text.Length)
            {
                await location.File.TruncateAsync(text.Length).ConfigureAwait(false);
            }

            await location.File.FlushAsync().ConfigureAwait(false);
            Cid = cid;
            Volatile.Write(ref _cidUpdated, true);
        }
        finally
        {
            _cidLock.Release();
        }
    }
}
