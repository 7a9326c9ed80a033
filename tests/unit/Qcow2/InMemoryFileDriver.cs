using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>
/// A "file" driver for unit tests: option filename names a file that is loaded into memory once
/// (from <see cref="Files"/>, or from disk on first use); nodes opened later share its bytes.
/// blockdev-create makes an in-memory file of the size asked.
/// </summary>
internal sealed class InMemoryFileDriver : IBlockDriver, IImageCreator
{
    public Dictionary<string, InMemoryFileNode> Opened { get; } = new();

    /// <summary>In-memory files by name; names not found here are read from disk.</summary>
    public Dictionary<string, byte[]> Files { get; } = new();

    public string Name => "file";

    public ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var name = options.RequireString("filename");
        options.Consume("aio");
        options.Consume("locking");
        if (!Files.TryGetValue(name, out var data))
        {
            if (!File.Exists(name))
            {
                throw new BlockException(Errno.ENOENT, $"Could not open '{name}': No such file or directory");
            }

            data = File.ReadAllBytes(name);
            Files[name] = data;
        }

        var node = new InMemoryFileNode(context.NodeName, name, data, context.ReadOnly);
        Opened[name] = node;
        return ValueTask.FromResult<BlockNode>(node);
    }

    public ValueTask CreateAsync(BlockGraph graph, OptionReader options)
    {
        var name = options.RequireString("filename");
        Files[name] = new byte[options.GetSize("size") ?? 0];
        options.Consume("preallocation");
        return ValueTask.CompletedTask;
    }
}
