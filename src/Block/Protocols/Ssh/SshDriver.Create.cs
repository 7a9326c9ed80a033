using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using Renci.SshNet.Common;

namespace ExportServer.Block.Protocols.Ssh;

/// <summary>
/// blockdev-create with BlockdevCreateOptionsSsh: location (the options of a node) and size. As
/// QEMU's, the remote file is created or truncated, then grown to the size.
/// </summary>
internal sealed partial class SshDriver : ILocationCreator
{
    public async ValueTask CreateAsync(BlockGraph graph, OptionReader options)
    {
        var locationOptions = options.GetObject("location") ?? throw BlockException.Invalid($"Parameter '{options.FullName("location")}' is missing");
        var location = SshLocation.Read(locationOptions);
        locationOptions.EnsureAllConsumed();
        var size = options.GetSize("size") ?? throw BlockException.Invalid($"Parameter '{options.FullName("size")}' is missing");
        using var client = await SshConnection.ConnectAsync(location, graph.Objects).ConfigureAwait(false);
        try
        {
            await SshConnection.OffLoop(() =>
            {
                using var stream = client.Open(location.Path, FileMode.Create, FileAccess.ReadWrite);
                if (size > 0)
                {
                    stream.SetLength(size);
                }
            }).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SshException or IOException)
        {
            throw SshConnection.OpenError(e, location.Path);
        }
    }
}
