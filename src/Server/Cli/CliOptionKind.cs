namespace ExportServer.Server.Cli;

internal enum CliOptionKind
{
    Blockdev,
    Chardev,
    Export,
    Monitor,
    NbdServer,
    Object,
}
