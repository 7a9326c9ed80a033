using System.Threading.Tasks.Sources;
using ExportServer.Block.Core;

namespace ExportServer.Nbd.Client;

/// <summary>
/// One reusable request slot of a connection; its index is the cookie on the wire. The requester fills it,
/// sends, and awaits <see cref="WaitAsync"/>; the receive loop fills in the answer and completes it exactly once
/// (when the DONE chunk or a simple reply arrives, or when the connection ends), then never touches it again
/// until the requester has returned it to the pool.
/// </summary>
internal sealed class NbdClientRequest : IValueTaskSource
{
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private int _completed;

    public NbdClientRequest(ulong cookie)
    {
        Cookie = cookie;
    }

    public ulong Cookie { get; }

    /// <summary>Set under the connection's gate when registered; cleared by the receive loop before completion.</summary>
    public volatile bool InUse;

    public ushort Command;
    public ushort Flags;
    public ulong Offset;
    public ulong Length;

    /// <summary>Where READ data goes; the receive loop writes into it directly from the socket buffer.</summary>
    public Memory<byte> ReadBuffer;

    /// <summary>Bytes of a READ answered so far by data and hole chunks.</summary>
    public ulong Covered;

    /// <summary>The meta context whose first extent a BLOCK_STATUS wants.</summary>
    public uint ContextId;

    public bool HasExtent;
    public NbdExtent Extent;

    /// <summary>The first error the server reported for this request (0 = none) and its message.</summary>
    public uint Error;
    public string? ErrorMessage;

    public void Prepare(ushort command, ushort flags, ulong offset, ulong length, Memory<byte> readBuffer, uint contextId)
    {
        _core.Reset();
        _completed = 0;
        Command = command;
        Flags = flags;
        Offset = offset;
        Length = length;
        ReadBuffer = readBuffer;
        Covered = 0;
        ContextId = contextId;
        HasExtent = false;
        Extent = default;
        Error = 0;
        ErrorMessage = null;
    }

    /// <summary>Records the first error reported; later ones add nothing.</summary>
    public void SetError(uint error, string? message)
    {
        if (Error == 0)
        {
            Error = error == 0 ? Protocol.NbdConstants.EIO : error;
            ErrorMessage = message;
        }
    }

    public void Complete()
    {
        if (Interlocked.Exchange(ref _completed, 1) == 0)
        {
            _core.SetResult(true);
        }
    }

    public void Fail(BlockException error)
    {
        if (Interlocked.Exchange(ref _completed, 1) == 0)
        {
            _core.SetException(error);
        }
    }

    public ValueTask WaitAsync() => new(this, _core.Version);

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
