using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Raw;

/// <summary>QEMU's raw format: the child's bytes, optionally a window [offset, offset+size) of them.</summary>
internal sealed partial class RawDriver : IBlockDriver
{
    private const int SectorSize = 512;

    public static RawDriver Instance { get; } = new();

    public string Name => "raw";

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var offset = ReadNonNegative(options, "offset") ?? 0;
        var size = ReadNonNegative(options, "size");
        var file = await context.OpenChildAsync(options, "file").ConfigureAwait(false)
                   ?? throw BlockException.Invalid($"Parameter '{options.FullName("file")}' is missing");

        var childLength = file.Length;
        if (offset > childLength)
        {
            throw BlockException.Invalid($"Offset ({offset}) cannot be greater than size of the containing file ({childLength})");
        }

        if (size is { } s && childLength - offset < s)
        {
            throw BlockException.Invalid(
                $"The sum of offset ({offset}) and size ({s}) has to be smaller or equal to the  actual size of the containing file ({childLength})");
        }

        // A size that is not a whole number of sectors would let rounded-up requests leak past the window.
        if (size is { } t && t % SectorSize != 0)
        {
            throw BlockException.Invalid($"Specified size is not multiple of {SectorSize}");
        }

        var readOnly = context.ReadOnly;
        if (file.IsReadOnly && !readOnly)
        {
            readOnly = context.AutoReadOnly ? true : throw new BlockException(Errno.EACCES, "Block node is read-only");
        }

        return new RawNode(context.NodeName, readOnly, file, offset, size);
    }

    /// <summary>offset and size are integers in the schema and sizes to raw-format, which refuses negatives with the size wording.</summary>
    private static long? ReadNonNegative(OptionReader options, string key)
    {
        var value = options.GetInt(key);
        if (value < 0)
        {
            throw OptionReader.NotASize(options.FullName(key));
        }

        return value;
    }
}
