using ExportServer.Fuse.Native;

namespace ExportServer.Fuse;

/// <summary>Replies through libfuse; the kernel copies reply data out of the given memory before the call returns.</summary>
internal sealed unsafe class NativeReplies : IFuseReplies
{
    public static NativeReplies Instance { get; } = new();

    private NativeReplies()
    {
    }

    public void Error(nint req, int errno) => LibFuse.ReplyErr(req, errno);

    public void Buffer(nint req, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            LibFuse.ReplyBuf(req, p, (nuint)data.Length);
        }
    }

    public void Written(nint req, int count) => LibFuse.ReplyWrite(req, (nuint)count);

    public void Attr(nint req, in Stat attr, double timeout)
    {
        fixed (Stat* p = &attr)
        {
            LibFuse.ReplyAttr(req, p, timeout);
        }
    }

    public void Lseek(nint req, long offset) => LibFuse.ReplyLseek(req, offset);

    public void StatFs(nint req, in StatVfs stat)
    {
        fixed (StatVfs* p = &stat)
        {
            LibFuse.ReplyStatFs(req, p);
        }
    }
}
