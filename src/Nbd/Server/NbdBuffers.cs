namespace ExportServer.Nbd.Server;

/// <summary>
/// The byte buffers of request payloads and replies. The shared ArrayPool keeps only a few arrays
/// per size per core, so with many large requests in flight (nbdcopy: 4 connections × 64 × 256 KiB)
/// most rents fell through to fresh large-object allocations and gen2 collections; this pool keeps
/// enough of each size for the requests a connection may have in flight, and lets them go once they
/// are no longer used (see NbdBufferPool).
/// </summary>
internal static class NbdBuffers
{
    public static NbdBufferPool Pool { get; } = new(TimeSpan.FromSeconds(1));
}
