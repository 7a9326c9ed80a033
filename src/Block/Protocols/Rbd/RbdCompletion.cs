using System.Buffers;
using System.Runtime.InteropServices;
using ExportServer.Block.Native;

namespace ExportServer.Block.Protocols.Rbd;

/// <summary>Runs librbd asynchronous requests on librbd completions whose callback ends a <see cref="NativeCompletion"/>.</summary>
internal static unsafe class RbdCompletion
{
    /// <summary>
    /// Starts <paramref name="op"/>; <paramref name="pin"/> keeps its buffer in place until it ends.
    /// The result is librbd's: bytes transferred or 0, or a negative errno.
    /// </summary>
    public static ValueTask<long> Run(in RbdOp op, MemoryHandle pin = default)
    {
        var request = NativeCompletion.Rent(pin);
        var r = LibRbd.rbd_aio_create_completion(request.Argument, &OnComplete, out var completion);
        if (r == 0)
        {
            r = op.Start(completion);
            if (r < 0)
            {
                LibRbd.rbd_aio_release(completion);
            }
        }

        return r < 0 ? request.Fail(r) : request.Task;
    }

    [UnmanagedCallersOnly]
    private static void OnComplete(nint completion, nint arg)
    {
        long result = LibRbd.rbd_aio_get_return_value(completion);
        LibRbd.rbd_aio_release(completion);
        NativeCompletion.Complete(arg, result);
    }
}
