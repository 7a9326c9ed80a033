using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;

namespace ExportServer.Block.Protocols.Rbd;

/// <summary>
/// One librbd asynchronous request as a <see cref="ValueTask{T}"/>: librbd calls back on its own
/// thread when the request ends, the result (bytes or a negative errno) completes the task and the
/// awaiting code continues on the thread pool, so no thread waits for a request. Completions are
/// pooled, with the GC handle that librbd carries as the callback's argument.
/// </summary>
internal sealed unsafe class RbdCompletion : IValueTaskSource<long>
{
    private const int PoolLimit = 256;
    private static readonly ConcurrentQueue<RbdCompletion> Pool = new();
    private static int s_pooled;

    private readonly GCHandle _self;
    private ManualResetValueTaskSourceCore<long> _core;
    private MemoryHandle _pin;

    private RbdCompletion()
    {
        _self = GCHandle.Alloc(this);
        _core.RunContinuationsAsynchronously = true;
    }

    /// <summary>
    /// Starts <paramref name="op"/>; <paramref name="pin"/> keeps its buffer in place until it ends.
    /// The result is librbd's: bytes transferred or 0, or a negative errno.
    /// </summary>
    public static ValueTask<long> Run(in RbdOp op, MemoryHandle pin = default)
    {
        if (!Pool.TryDequeue(out var request))
        {
            request = new RbdCompletion();
        }
        else
        {
            Interlocked.Decrement(ref s_pooled);
        }

        request._pin = pin;
        var r = LibRbd.rbd_aio_create_completion(GCHandle.ToIntPtr(request._self), &OnComplete, out var completion);
        if (r == 0)
        {
            r = op.Start(completion);
            if (r < 0)
            {
                LibRbd.rbd_aio_release(completion);
            }
        }

        if (r < 0)
        {
            request._pin.Dispose();
            request._core.Reset();
            request.Return();
            return ValueTask.FromResult((long)r);
        }

        return new ValueTask<long>(request, request._core.Version);
    }

    [UnmanagedCallersOnly]
    private static void OnComplete(nint completion, nint arg)
    {
        var request = (RbdCompletion)GCHandle.FromIntPtr(arg).Target!;
        long result = LibRbd.rbd_aio_get_return_value(completion);
        LibRbd.rbd_aio_release(completion);
        request._pin.Dispose();
        request._pin = default;
        request._core.SetResult(result);
    }

    public long GetResult(short token)
    {
        try
        {
            return _core.GetResult(token);
        }
        finally
        {
            _core.Reset();
            Return();
        }
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    private void Return()
    {
        if (Interlocked.Increment(ref s_pooled) <= PoolLimit)
        {
            Pool.Enqueue(this);
        }
        else
        {
            Interlocked.Decrement(ref s_pooled);
            _self.Free();
        }
    }
}
