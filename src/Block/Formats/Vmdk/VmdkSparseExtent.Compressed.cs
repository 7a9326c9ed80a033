using System.Buffers;
using System.IO.Compression;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// Compressed grains (stream-optimized extents): zlib streams, each after a marker giving its
/// length. Written as QEMU writes them: whole grains (the last one may be short), appended, each
/// grain written once.
/// </summary>
internal sealed partial class VmdkSparseExtent
{
    /// <summary>Inflates the grain whose marker is at <paramref name="host"/> and copies the part [inGrain, inGrain+buffer.Length).</summary>
    public async ValueTask ReadCompressedAsync(long host, long inGrain, Memory<byte> buffer)
    {
        var grainBytes = (int)_layout.GrainBytes;

        // A grain that compressed badly may take more than a grain: up to two, as QEMU reads.
        var limit = Math.Min(2L * grainBytes, File.Length - host);
        var start = host;
        var length = limit;
        if (_layout.Markers)
        {
            var marker = new byte[VmdkGrainMarker.Size];
            if (File.Length - host < marker.Length)
            {
                throw BlockException.Io($"vmdk: grain marker at 0x{host:x} of '{File.FileName}' is truncated");
            }

            await File.ReadAsync(host, marker).ConfigureAwait(false);
            length = VmdkGrainMarker.Read(marker).Length;
            start = host + VmdkGrainMarker.Size;
            limit = Math.Min(limit, File.Length - start);
        }

        if (length == 0 || length > limit)
        {
            throw BlockException.Io($"vmdk: compressed grain at 0x{host:x} of '{File.FileName}' has an invalid size {length}");
        }

        var input = ArrayPool<byte>.Shared.Rent((int)length);
        var output = ArrayPool<byte>.Shared.Rent(grainBytes);
        try
        {
            await File.ReadAsync(start, input.AsMemory(0, (int)length)).ConfigureAwait(false);
            var produced = Inflate(input, 0, (int)length, output.AsSpan(0, grainBytes), host);
            if (inGrain + buffer.Length > produced)
            {
                throw BlockException.Io($"vmdk: compressed grain at 0x{host:x} of '{File.FileName}' inflates to {produced} bytes, too few for the read");
            }

            output.AsSpan((int)inGrain, buffer.Length).CopyTo(buffer.Span);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(input);
            ArrayPool<byte>.Shared.Return(output);
        }
    }

    private int Inflate(byte[] input, int start, int length, Span<byte> output, long host)
    {
        try
        {
            using var source = new MemoryStream(input, start, length, writable: false);
            using var z = new ZLibStream(source, CompressionMode.Decompress);
            var total = 0;
            while (total < output.Length)
            {
                var n = z.Read(output[total..]);
                if (n == 0)
                {
                    break;
                }

                total += n;
            }

            return total;
        }
        catch (InvalidDataException e)
        {
            throw BlockException.Io($"vmdk: compressed grain at 0x{host:x} of '{File.FileName}' is not a valid zlib stream", e);
        }
    }

    /// <summary>
    /// Appends <paramref name="data"/> as one compressed grain. Only whole grains at grain offsets
    /// (or the short last grain) into grains not yet written; the caller holds the grain's range lock.
    /// </summary>
    private async ValueTask WriteCompressedLockedAsync(long offset, ReadOnlyMemory<byte> data, VmdkGrain current)
    {
        var grainStart = offset - (offset % _layout.GrainBytes);
        var grainLength = Math.Min(_layout.GrainBytes, Length - grainStart);
        if (current.Kind != VmdkGrainKind.Unallocated && current.Kind != VmdkGrainKind.Zero)
        {
            throw BlockException.Io("Could not write to allocated cluster for streamOptimized");
        }

        if (offset != grainStart || data.Length != grainLength)
        {
            throw BlockException.Invalid(
                $"vmdk: stream-optimized images take whole grains of {_layout.GrainBytes} bytes (write at {Start + offset}, {data.Length} bytes)");
        }

        if (!_layout.Markers)
        {
            throw BlockException.Invalid("vmdk: compressed writes need grain markers");
        }

        using var packed = new MemoryStream();
        packed.Write(new byte[VmdkGrainMarker.Size]);
        using (var z = new ZLibStream(packed, CompressionLevel.Optimal, leaveOpen: true))
        {
            z.Write(data.Span);
        }

        var compressedLength = (int)packed.Length - VmdkGrainMarker.Size;
        packed.SetLength(AlignUp(packed.Length, VmdkFormat.SectorSize));
        var bytes = packed.GetBuffer().AsMemory(0, (int)packed.Length);
        new VmdkGrainMarker((ulong)((Start + offset) / VmdkFormat.SectorSize), (uint)compressedLength).Write(bytes.Span);
        var host = await ReserveAsync(grainStart, bytes.Length).ConfigureAwait(false);
        await File.WriteAsync(host, bytes).ConfigureAwait(false);
        await SetEntryAsync(grainStart, (ulong)(host / VmdkFormat.SectorSize)).ConfigureAwait(false);
    }
}
