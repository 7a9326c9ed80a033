using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Vdi;

/// <summary>Options of a new VDI image (QAPI BlockdevCreateOptionsVdi without the file node).</summary>
internal sealed record VdiCreateOptions
{
    public required long Size { get; init; }

    /// <summary>preallocation=metadata: every block mapped from the start (a "static" image).</summary>
    public bool Static { get; init; }

    /// <summary>Binds size and preallocation (a PreallocMode; only off and metadata make sense for vdi).</summary>
    public static VdiCreateOptions Read(OptionReader r)
    {
        var size = r.GetSize("size") ?? throw BlockException.Invalid($"Parameter '{r.FullName("size")}' is missing");
        var mode = r.GetString("preallocation") ?? "off";
        return new VdiCreateOptions
        {
            Size = size,
            Static = mode switch
            {
                "off" => false,
                "metadata" => true,
                "falloc" or "full" => throw BlockException.Invalid("Preallocation mode not supported for vdi"),
                _ => throw BlockException.Invalid($"Parameter '{r.FullName("preallocation")}' does not accept value '{mode}'"),
            },
        };
    }
}
