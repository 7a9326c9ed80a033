using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Filters.Compress;

/// <summary>The 'compress' driver (QEMU's filter-compress): a filter over 'file' that stores every write compressed.</summary>
internal sealed class CompressDriver : IBlockDriver
{
    public static CompressDriver Instance { get; } = new();

    public string Name => "compress";

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var file = await context.OpenChildAsync(options, "file").ConfigureAwait(false)
                   ?? throw BlockException.Invalid($"Parameter '{options.FullName("file")}' is missing");
        if (file.CompressedWriteSize == 0)
        {
            throw BlockException.NotSupported($"Compression is not supported for underlying format: {file.DriverName}");
        }

        return new CompressNode(context.NodeName, context.ReadOnly, file);
    }
}
