using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Vhdx;

/// <summary>Options of a new VHDX image (QAPI BlockdevCreateOptionsVhdx without the file node), checked with QEMU's words.</summary>
internal sealed record VhdxCreateOptions
{
    private static readonly IReadOnlyDictionary<string, bool> s_subformats = new Dictionary<string, bool>(StringComparer.Ordinal)
    {
        ["dynamic"] = false,
        ["fixed"] = true,
    };

    public required long Size { get; init; }

    public long LogSize { get; init; } = VhdxFormat.MiB;

    /// <summary>0: chosen from the size, as QEMU does.</summary>
    public long BlockSize { get; init; }

    public bool Fixed { get; init; }

    /// <summary>New blocks in state ZERO rather than NOT_PRESENT (QEMU's default).</summary>
    public bool BlockStateZero { get; init; } = true;

    /// <summary>The parent of a differencing image, as the image will name it (relative to its directory or absolute).</summary>
    public string? BackingFile { get; init; }

    /// <summary>The parent's data write GUID, which a differencing image records as its parent_linkage.</summary>
    public Guid ParentLinkage { get; init; }

    public static VhdxCreateOptions Read(OptionReader r) => new()
    {
        Size = r.GetSize("size") ?? throw BlockException.Invalid($"Parameter '{r.FullName("size")}' is missing"),
        LogSize = r.GetSize("log-size") ?? VhdxFormat.MiB,
        BlockSize = r.GetSize("block-size") ?? 0,
        Fixed = r.GetEnum("subformat", s_subformats) ?? false,
        BlockStateZero = r.GetBool("block-state-zero", true),
        BackingFile = r.GetString("backing-file"),
    };

    /// <summary>QEMU's checks at the start of vhdx_co_create, and its block size for a size.</summary>
    public uint EffectiveBlockSize()
    {
        if (Size > VhdxFormat.MaxImageSize)
        {
            throw BlockException.Invalid("Image size too large; max of 64TB");
        }

        if (BackingFile is not null && Fixed)
        {
            throw BlockException.Invalid("vhdx: a differencing image cannot be fixed");
        }

        if (LogSize > uint.MaxValue)
        {
            throw BlockException.Invalid("Log size must be smaller than 4 GB");
        }

        if (LogSize < VhdxFormat.MiB || LogSize % VhdxFormat.MiB != 0)
        {
            throw BlockException.Invalid("Log size must be a multiple of 1 MB");
        }

        if (BlockSize == 0)
        {
            return Size > 32L << 40 ? 64u * VhdxFormat.MiB
                : Size > 100L << 30 ? 32u * VhdxFormat.MiB
                : Size > 1L << 30 ? 16u * VhdxFormat.MiB
                : 8u * VhdxFormat.MiB;
        }

        if (BlockSize < VhdxFormat.MiB || BlockSize % VhdxFormat.MiB != 0 || BlockSize > uint.MaxValue)
        {
            throw BlockException.Invalid("Block size must be a multiple of 1 MB");
        }

        if (!System.Numerics.BitOperations.IsPow2(BlockSize))
        {
            throw BlockException.Invalid("Block size must be a power of two");
        }

        return BlockSize > VhdxFormat.MaxBlockSize
            ? throw BlockException.Invalid($"Block size must not exceed {VhdxFormat.MaxBlockSize}")
            : (uint)BlockSize;
    }
}
