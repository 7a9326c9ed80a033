using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Vpc;

/// <summary>
/// Options of a new VHD image (QAPI BlockdevCreateOptionsVpc without the file node): the one record
/// behind blockdev-create and qemu-img's -o options, which are renamed to these and bound by <see cref="Read"/>.
/// </summary>
internal sealed record VpcCreateOptions
{
    private static readonly IReadOnlyDictionary<string, bool> s_subformats = new Dictionary<string, bool>(StringComparer.Ordinal)
    {
        ["dynamic"] = false,
        ["fixed"] = true,
    };

    public required long Size { get; init; }

    public bool Fixed { get; init; }

    /// <summary>Size the image by <see cref="Size"/> rather than the nearest CHS geometry (creator "qem2").</summary>
    public bool ForceSize { get; init; }

    /// <summary>Binds size, subformat and force-size.</summary>
    public static VpcCreateOptions Read(OptionReader r) => new()
    {
        Size = r.GetSize("size") ?? throw BlockException.Invalid($"Parameter '{r.FullName("size")}' is missing"),
        Fixed = r.GetEnum("subformat", s_subformats) ?? false,
        ForceSize = r.GetBool("force-size", false),
    };
}
