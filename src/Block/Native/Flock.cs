using System.Runtime.InteropServices;

namespace ExportServer.Block.Native;

/// <summary>struct flock as Linux lays it out on 64-bit targets (32 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct Flock
{
    public short Type;
    public short Whence;
    public long Start;
    public long Length;
    public int Pid;
    private int _padding;
}
