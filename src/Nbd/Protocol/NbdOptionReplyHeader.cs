namespace ExportServer.Nbd.Protocol;

/// <summary>A server option reply header: the option it answers, the reply type and the length of the data that follows.</summary>
internal readonly record struct NbdOptionReplyHeader(uint Option, uint Type, uint Length)
{
    public bool IsError => (Type & NbdConstants.RepFlagError) != 0;
}
