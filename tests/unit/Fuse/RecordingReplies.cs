using ExportServer.Fuse;
using ExportServer.Fuse.Native;

namespace ExportServer.UnitTests.Fuse;

/// <summary>Records every reply so tests can check that each request got exactly one, and which.</summary>
internal sealed class RecordingReplies : IFuseReplies
{
    private readonly object _lock = new();

    public List<Reply> Replies { get; } = new();

    public void Error(nint req, int errno) => Add(new Reply(req, "err", Errno: errno));

    public void Buffer(nint req, ReadOnlySpan<byte> data) => Add(new Reply(req, "buf", Data: data.ToArray()));

    public void Written(nint req, int count) => Add(new Reply(req, "write", Count: count));

    public void Attr(nint req, in Stat attr, double timeout) => Add(new Reply(req, "attr", Attr: attr));

    public void Lseek(nint req, long offset) => Add(new Reply(req, "lseek", Offset: offset));

    public void StatFs(nint req, in StatVfs stat) => Add(new Reply(req, "statfs", StatFs: stat));

    /// <summary>The only reply to <paramref name="req"/>; fails when there is none or more than one.</summary>
    public Reply Single(nint req)
    {
        lock (_lock)
        {
            return Replies.Where(r => r.Req == req).Single();
        }
    }

    private void Add(Reply r)
    {
        lock (_lock)
        {
            Replies.Add(r);
        }
    }

    internal sealed record Reply(
        nint Req,
        string Kind,
        int Errno = 0,
        byte[]? Data = null,
        int Count = 0,
        Stat Attr = default,
        long Offset = 0,
        StatVfs StatFs = default);
}
