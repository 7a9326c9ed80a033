namespace ExportServer.Block.Native;

/// <summary>struct iovec: one buffer of a vectored read or write.</summary>
internal unsafe struct IoVec
{
    public byte* Base;
    public nuint Length;
}
