using System.Numerics;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Protocols.Rbd;

/// <summary>
/// QEMU's rbd driver: a Ceph RBD image through librados and librbd, opened from BlockdevOptionsRbd
/// or an <c>rbd:pool/image</c> file name, created by blockdev-create (BlockdevCreateOptionsRbd).
/// Connecting talks to the monitors and blocks, so it runs on the thread pool.
/// </summary>
internal sealed class RbdDriver : IBlockDriver, IProtocolFileNames, ILocationCreator
{
    public static RbdDriver Instance { get; } = new();

    public string Name => "rbd";

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        if (options.Has("encrypt"))
        {
            throw BlockException.NotSupported("RBD library does not support image encryption");
        }

        var location = RbdLocation.Read(options);
        options.EnsureAllConsumed();
        return await Task.Run(() => RbdNode.Open(context, location)).ConfigureAwait(false);
    }

    public JsonObject? ParseFileName(string fileName) =>
        fileName.StartsWith("rbd:", StringComparison.Ordinal) ? RbdFileName.Parse(fileName) : null;

    /// <summary>
    /// BlockdevCreateOptionsRbd: location, size, cluster-size (the object size, a power of two of at
    /// least 4 KiB; librbd's default when absent). Encryption is refused.
    /// </summary>
    public async ValueTask CreateAsync(BlockGraph graph, OptionReader options)
    {
        var locationOptions = options.GetObject("location") ?? throw BlockException.Invalid($"Parameter '{options.FullName("location")}' is missing");
        var size = options.GetSize("size") ?? throw BlockException.Invalid($"Parameter '{options.FullName("size")}' is missing");
        var objectSize = options.GetSize("cluster-size");
        if (options.Has("encrypt"))
        {
            throw BlockException.NotSupported("RBD library does not support image encryption");
        }

        // BlockdevCreateOptionsRbd has no preallocation (QEMU's rbd driver has none): its schema refuses the member.
        if (options.Has("preallocation"))
        {
            throw BlockException.Invalid("Parameter 'options.preallocation' is unexpected");
        }

        var location = RbdLocation.Read(locationOptions);
        locationOptions.EnsureAllConsumed();
        options.EnsureAllConsumed();
        await Task.Run(() => Create(graph.Objects, location, size, objectSize)).ConfigureAwait(false);
    }

    private static void Create(NamedObjects objects, RbdLocation location, long size, long? objectSize)
    {
        if (location.Snapshot is not null)
        {
            throw BlockException.Invalid("Can't use snapshot name for image creation");
        }

        var order = 0;
        if (objectSize is { } objSize)
        {
            if (!BitOperations.IsPow2(objSize))
            {
                throw BlockException.Invalid("obj size needs to be power of 2");
            }

            if (objSize < 4096)
            {
                throw BlockException.Invalid("obj size too small");
            }

            order = BitOperations.Log2((ulong)objSize);
        }

        using var cluster = RbdCluster.Connect(objects, location, cache: false);
        var r = LibRbd.rbd_create(cluster.IoContext, location.Image, (ulong)size, ref order);
        if (r < 0)
        {
            throw RbdCluster.Failure(r, "error rbd create");
        }
    }
}
