using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Protocols.Null;

/// <summary>QEMU's null-co and null-aio: a device of a given size that stores nothing.</summary>
internal sealed class NullDriver : IBlockDriver
{
    private const long DefaultSize = 1L << 30;

    private NullDriver(string name)
    {
        Name = name;
    }

    public static NullDriver Co { get; } = new("null-co");

    public static NullDriver Aio { get; } = new("null-aio");

    public string Name { get; }

    public ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var size = options.GetInt("size") ?? DefaultSize;
        var latency = options.GetInt("latency-ns") ?? 0;
        var readZeroes = options.GetBool("read-zeroes", false);
        if (latency < 0)
        {
            throw BlockException.Invalid("latency-ns is invalid");
        }

        if (size < 0)
        {
            throw OptionReader.NotASize(options.FullName("size"));
        }

        BlockNode node = new NullNode(context.NodeName, Name, context.ReadOnly, size, TimeSpan.FromTicks(latency / 100), readZeroes);
        return ValueTask.FromResult(node);
    }
}
