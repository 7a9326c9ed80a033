using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// Options of a new vmdk image with QEMU's defaults: the one record behind blockdev-create,
/// <c>export-server create -o</c> and job targets (qemu-img's names are translated into
/// blockdev-create's and bound through <see cref="Read"/>, as QEMU's vmdk_co_create_opts does).
/// </summary>
internal sealed record VmdkCreateOptions
{
    public static readonly IReadOnlySet<string> Subformats = new HashSet<string>(StringComparer.Ordinal)
    {
        "monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat", "streamOptimized",
    };

    public static readonly IReadOnlySet<string> AdapterTypes = new HashSet<string>(StringComparer.Ordinal)
    {
        "ide", "buslogic", "lsilogic", "legacyESX",
    };

    public required long Size { get; init; }

    public string Subformat { get; init; } = "monolithicSparse";

    public string AdapterType { get; init; } = "ide";

    public string? BackingFile { get; init; }

    public string? HwVersion { get; init; }

    public string? ToolsVersion { get; init; }

    public bool ZeroedGrain { get; init; }

    /// <summary>qemu-img's compat6: hardware version 6 (refused together with hwversion).</summary>
    public bool Compat6 { get; init; }

    public bool IsFlat => Subformat is "monolithicFlat" or "twoGbMaxExtentFlat";

    public bool IsSplit => Subformat is "twoGbMaxExtentSparse" or "twoGbMaxExtentFlat";

    public bool IsCompressed => Subformat == "streamOptimized";

    private static string? Enum(OptionReader r, string key, IReadOnlySet<string> values) =>
        r.GetString(key) is not { } value || values.Contains(value)
            ? r.GetString(key)
            : throw BlockException.Invalid($"Parameter '{r.FullName(key)}' does not accept value '{value}'");

    /// <summary>Binds BlockdevCreateOptionsVmdk apart from the nodes (file, extents), which the creator reads.</summary>
    public static VmdkCreateOptions Read(OptionReader r) => new()
    {
        Size = r.GetSize("size") ?? throw BlockException.Invalid($"Parameter '{r.FullName("size")}' is missing"),
        Subformat = Enum(r, "subformat", Subformats) ?? "monolithicSparse",
        AdapterType = Enum(r, "adapter-type", AdapterTypes) ?? "ide",
        BackingFile = r.GetString("backing-file"),
        HwVersion = r.GetString("hwversion"),
        ToolsVersion = r.GetString("toolsversion"),
        ZeroedGrain = r.GetBool("zeroed-grain", false),
    };
}
