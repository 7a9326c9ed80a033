using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using Renci.SshNet;
using Renci.SshNet.Common;
using Renci.SshNet.Sftp;

namespace ExportServer.Block.Protocols.Ssh;

/// <summary>QEMU's driver=ssh (BlockdevOptionsSsh): a file on another host, over SFTP.</summary>
internal sealed partial class SshDriver : IBlockDriver
{
    public static SshDriver Instance { get; } = new();

    public string Name => "ssh";

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var location = SshLocation.Read(options);
        var client = await SshConnection.ConnectAsync(location, context.Graph.Objects).ConfigureAwait(false);
        var streams = new List<SftpFileStream>();
        try
        {
            var access = context.ReadOnly ? FileAccess.Read : FileAccess.ReadWrite;
            client.BufferSize = SshNode.ReadLength + SshNode.DataHeaderLength;
            for (var i = 0; i < SshNode.Handles; i++)
            {
                streams.Add(await SshConnection.OffLoop(() => client.Open(location.Path, FileMode.Open, access)).ConfigureAwait(false));
            }

            var length = await SshConnection.OffLoop(() => streams[0].Length).ConfigureAwait(false);
            return new SshNode(context.NodeName, context.ReadOnly, client, [.. streams], length, location.FileName);
        }
        catch (Exception e) when (e is SshException or IOException)
        {
            foreach (var s in streams)
            {
                await s.DisposeAsync().ConfigureAwait(false);
            }

            client.Dispose();
            throw SshConnection.OpenError(e, location.Path);
        }
    }
}
