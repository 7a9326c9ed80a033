using ExportServer.Block.Core;
using ExportServer.Block.Filters.Compress;
using ExportServer.Block.Filters.CopyBeforeWrite;
using ExportServer.Block.Filters.SnapshotAccess;
using ExportServer.Block.Filters.Throttle;
using ExportServer.Block.Formats.Bochs;
using ExportServer.Block.Formats.Cloop;
using ExportServer.Block.Formats.Dmg;
using ExportServer.Block.Formats.Luks;
using ExportServer.Block.Formats.MagicOnly;
using ExportServer.Block.Formats.Parallels;
using ExportServer.Block.Formats.Qcow2;
using ExportServer.Block.Formats.Qed;
using ExportServer.Block.Formats.Raw;
using ExportServer.Block.Formats.Vdi;
using ExportServer.Block.Formats.Vhdx;
using ExportServer.Block.Formats.Vmdk;
using ExportServer.Block.Formats.Vpc;
using ExportServer.Block.Protocols.File;
using ExportServer.Block.Protocols.Gluster;
using ExportServer.Block.Protocols.Http;
using ExportServer.Block.Protocols.Null;
using ExportServer.Block.Protocols.Rbd;
using ExportServer.Block.Protocols.Ssh;

namespace ExportServer.Block;

/// <summary>
/// The drivers built into the block layer, registered in one place: a driver is one line here and
/// brings its probe, its image creation and its query information with it (opt-in interfaces).
/// </summary>
public static class BlockDrivers
{
    public static void RegisterBuiltIn(BlockGraph graph)
    {
        graph.Register(FileDriver.File);
        graph.Register(FileDriver.HostDevice);
        graph.Register(RawDriver.Instance);
        graph.Register(NullDriver.Co);
        graph.Register(NullDriver.Aio);
        graph.Register(RbdDriver.Instance);
        graph.Register(GlusterDriver.Instance);
        graph.Register(new Qcow2Driver());
        graph.Register(new VmdkDriver());
        graph.Register(VpcDriver.Instance);
        graph.Register(VdiDriver.Instance);
        graph.Register(VhdxDriver.Instance);
        graph.Register(QedDriver.Instance);
        graph.Register(BochsDriver.Instance);
        graph.Register(CloopDriver.Instance);
        graph.Register(ParallelsDriver.Instance);
        graph.Register(DmgDriver.Instance);
        graph.Register(LuksDriver.Instance);
        graph.Register(ThrottleDriver.Instance);
        graph.Register(CompressDriver.Instance);
        graph.Register(CopyBeforeWriteDriver.Instance);
        graph.Register(SnapshotAccessDriver.Instance);
        graph.Register(SshDriver.Instance);
        graph.Register(HttpDriver.Http);
        graph.Register(HttpDriver.Https);
        foreach (var probe in MagicOnlyFormats.All)
        {
            graph.Probes.AddMagicOnly(probe);
        }
    }
}
