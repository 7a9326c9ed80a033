using System.Buffers;

namespace ExportServer.Nbd.Server;

/// <summary>
/// The byte buffers of request payloads and replies. The shared ArrayPool keeps only a few arrays
/// per size per core, so with many large requests in flight (nbdcopy: 4 connections × 64 × 256 KiB)
/// most rents fell through to fresh large-object allocations and gen2 collections; this pool keeps
/// enough of each size for the requests a connection may have in flight.
/// </summary>
internal static class NbdBuffers
{
    public static ArrayPool<byte> Pool { get; } = ArrayPool<byte>.Create(maxArrayLength: 64 * 1024 * 1024, maxArraysPerBucket: 128);
}
