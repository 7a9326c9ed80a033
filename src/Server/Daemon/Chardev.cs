namespace ExportServer.Server.Daemon;

/// <summary>A --chardev socket: the unix socket a QMP monitor listens on.</summary>
internal sealed record Chardev(string Id, string Path, bool Server, bool Wait)
{
    public bool InUse { get; set; }
}
