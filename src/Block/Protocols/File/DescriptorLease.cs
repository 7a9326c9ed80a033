using Microsoft.Win32.SafeHandles;

namespace ExportServer.Block.Protocols.File;

/// <summary>
/// A request's reference to a file node's descriptor. A reopen may replace the node's handle and
/// dispose the old one while the request runs; the descriptor is then closed only when the last
/// lease lets go, so its number cannot be reused under a request that still uses it (the direct-I/O
/// threads and libc calls take the raw number).
/// </summary>
internal readonly struct DescriptorLease : IDisposable
{
    private DescriptorLease(SafeFileHandle handle) => Handle = handle;

    public SafeFileHandle Handle { get; }

    public nint Fd => Handle.DangerousGetHandle();

    /// <summary>Takes a reference to the handle <paramref name="current"/> returns, retrying when a reopen replaced it meanwhile.</summary>
    public static DescriptorLease Take(ref SafeFileHandle current)
    {
        while (true)
        {
            var handle = Volatile.Read(ref current);
            var added = false;
            try
            {
                handle.DangerousAddRef(ref added);
                return new DescriptorLease(handle);
            }
            catch (ObjectDisposedException) when (!ReferenceEquals(handle, Volatile.Read(ref current)))
            {
                // Replaced and closed between the read and the reference: take the new one.
            }
        }
    }

    public void Dispose() => Handle.DangerousRelease();
}
