using System.Buffers;
using System.Threading.Tasks.Sources;

namespace ExportServer.Block.Native;

/// <summary>
/// One request on an <see cref="IoUring"/>: a reusable value-task source that writes its own
/// submission entry (struct io_uring_sqe, 64 bytes) and keeps the buffer pinned until the kernel's
/// completion ends it, so a request allocates nothing once the ring's pool is warm.
/// </summary>
internal sealed unsafe class IoUringRequest : IValueTaskSource<long>
{
    public const int SqeSize = 64;
    public const int CqeSize = 16;

    public const byte OpNop = 0;
    public const byte OpFsync = 3;
    public const byte OpRead = 22;
    public const byte OpWrite = 23;

    /// <summary>IORING_FSYNC_DATASYNC: fdatasync rather than fsync.</summary>
    public const uint FsyncDataSync = 1;

    // struct io_uring_sqe
    private const int SqeOpcode = 0;
    private const int SqeFd = 4;
    private const int SqeOffset = 8;
    private const int SqeAddress = 16;
    private const int SqeLength = 24;
    private const int SqeOpFlags = 28;
    private const int SqeUserData = 32;

    private readonly IoUring _ring;
    private ManualResetValueTaskSourceCore<long> _core;
    private byte _opcode;
    private nint _fd;
    private MemoryHandle _pin;
    private int _length;
    private long _offset;
    private uint _opFlags;

    /// <summary>Whether the completion thread already submitted this request again (see IoUring.Reap).</summary>
    public bool Resubmitted { get; set; }

    public IoUringRequest(IoUring ring, bool inlineCompletions)
    {
        _ring = ring;
        _core.RunContinuationsAsynchronously = !inlineCompletions;
    }

    public ValueTask<long> Start(byte opcode, nint fd, MemoryHandle pin, int length, long offset, uint opFlags)
    {
        _core.Reset();
        Resubmitted = false;
        _opcode = opcode;
        _fd = fd;
        _pin = pin;
        _length = length;
        _offset = offset;
        _opFlags = opFlags;
        return new ValueTask<long>(this, _core.Version);
    }

    /// <summary>Writes this request's submission entry.</summary>
    public void Fill(byte* sqe, ulong userData) =>
        FillEntry(sqe, _opcode, _fd, (byte*)_pin.Pointer, _length, _offset, _opFlags, userData);

    /// <summary>Writes a submission entry of <paramref name="opcode"/> (read, write or fsync) for the given range.</summary>
    public static void FillEntry(byte* sqe, byte opcode, nint fd, byte* buffer, int length, long offset, uint opFlags, ulong userData)
    {
        new Span<byte>(sqe, SqeSize).Clear();
        sqe[SqeOpcode] = opcode;
        *(int*)(sqe + SqeFd) = (int)fd;
        *(long*)(sqe + SqeOffset) = offset;
        *(ulong*)(sqe + SqeAddress) = (ulong)buffer;
        *(uint*)(sqe + SqeLength) = (uint)length;
        *(uint*)(sqe + SqeOpFlags) = opFlags;
        *(ulong*)(sqe + SqeUserData) = userData;
    }

    /// <summary>Writes a no-op entry, which completes at once with <paramref name="userData"/>.</summary>
    public static void FillNop(byte* sqe, ulong userData)
    {
        new Span<byte>(sqe, SqeSize).Clear();
        sqe[SqeOpcode] = OpNop;
        *(ulong*)(sqe + SqeUserData) = userData;
    }

    /// <summary>Ends the request with the kernel's result (bytes or -errno); the buffer is unpinned first.</summary>
    public void Complete(long result)
    {
        _pin.Dispose();
        _pin = default;
        _core.SetResult(result);
    }

    public long GetResult(short token)
    {
        try
        {
            return _core.GetResult(token);
        }
        finally
        {
            _ring.Return(this);
        }
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
