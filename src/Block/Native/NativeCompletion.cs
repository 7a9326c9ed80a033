using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;

namespace ExportServer.Block.Native;

/// <summary>
/// A request to a native library that calls back when it ends (librbd, libgfapi), as a
/// <see cref="ValueTask{T}"/>: the library's callback, on its own thread, passes
/// <see cref="Argument"/> and the result (bytes or a negative errno) to <see cref="Complete"/>, and
/// the awaiting code continues on <see cref="NativeCompletionThread"/>, so no thread waits for a
/// request. Instances are pooled with the GC handle that the library carries as the callback's
/// argument; the buffer pin is released when the request ends.
/// </summary>
internal sealed class NativeCompletion : IValueTaskSource<long>
{
    private const int PoolLimit = 256;
    private static readonly ConcurrentQueue<NativeCompletion> Pool = new();
    private static int s_pooled;

    private readonly GCHandle _self;
    private ManualResetValueTaskSourceCore<long> _core;
    private MemoryHandle _pin;
    private long _result;

    private NativeCompletion()
    {
        _self = GCHandle.Alloc(this);
        // The continuation runs inline where SetResult is called: on NativeCompletionThread, never on the library's thread.
        _core.RunContinuationsAsynchronously = false;
    }

    /// <summary>What the native call carries to its callback.</summary>
    public nint Argument => GCHandle.ToIntPtr(_self);

    /// <summary>The request's result once <see cref="Complete"/> is called.</summary>
    public ValueTask<long> Task => new(this, _core.Version);

    public static NativeCompletion Rent(MemoryHandle pin = default)
    {
        if (Pool.TryDequeue(out var request))
        {
            Interlocked.Decrement(ref s_pooled);
        }
        else
        {
            request = new NativeCompletion();
        }

        request._pin = pin;
        return request;
    }

    /// <summary>
    /// Ends the request whose <see cref="Argument"/> is <paramref name="argument"/>; called on the
    /// library's thread, it only records the result and queues the request to resume elsewhere.
    /// </summary>
    public static void Complete(nint argument, long result)
    {
        var request = (NativeCompletion)GCHandle.FromIntPtr(argument).Target!;
        request._pin.Dispose();
        request._pin = default;
        request._result = result;
        NativeCompletionThread.Post(request);
    }

    /// <summary>Ends the request on <see cref="NativeCompletionThread"/>: the awaiting code continues here.</summary>
    internal void Resume() => _core.SetResult(_result);

    /// <summary>For a request the library refused to start: <paramref name="result"/> at once, and the instance back in the pool.</summary>
    public ValueTask<long> Fail(long result)
    {
        _pin.Dispose();
        _pin = default;
        Return();
        return ValueTask.FromResult(result);
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
