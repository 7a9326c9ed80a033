using ExportServer.Fuse.Native;

namespace ExportServer.Fuse;

/// <summary>
/// The replies an operation can send. Each request gets exactly one of them; libfuse frees the
/// request with the reply. The native implementation calls <c>fuse_reply_*</c>; tests record.
/// </summary>
internal interface IFuseReplies
{
    /// <summary>An error (positive errno), or success without data when <paramref name="errno"/> is 0.</summary>
    void Error(nint req, int errno);

    void Buffer(nint req, ReadOnlySpan<byte> data);

    void Written(nint req, int count);

    void Attr(nint req, in Stat attr, double timeout);

    void Lseek(nint req, long offset);

    void StatFs(nint req, in StatVfs stat);
}
