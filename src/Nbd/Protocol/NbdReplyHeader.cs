namespace ExportServer.Nbd.Protocol;

/// <summary>
/// A decoded reply header: a simple reply (<see cref="IsSimple"/>, with <see cref="Error"/> and no length),
/// or a structured/extended chunk header (flags, type, payload length; <see cref="Offset"/> only extended).
/// </summary>
internal readonly record struct NbdReplyHeader(bool IsSimple, uint Error, ushort Flags, ushort Type, ulong Cookie, ulong Offset, ulong Length)
{
    public bool IsDone => IsSimple || (Flags & NbdConstants.ReplyFlagDone) != 0;
}
