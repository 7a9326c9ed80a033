using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Luks;

/// <summary>Options of a new LUKS image (QAPI BlockdevCreateOptionsLUKS without the file node).</summary>
internal sealed record LuksCreateOptions
{
    public required long Size { get; init; }

    public required LuksCryptoOptions Crypto { get; init; }

    /// <summary>off, metadata, falloc or full (the payload written as zeroes on disk, as QEMU's file preallocation does).</summary>
    public string Preallocation { get; init; } = "off";

    public static LuksCreateOptions Read(OptionReader r)
    {
        var size = r.GetSize("size") ?? throw BlockException.Invalid($"Parameter '{r.FullName("size")}' is missing");
        var crypto = LuksCryptoOptions.Read(r);
        var prealloc = r.GetString("preallocation") ?? "off";
        if (prealloc is not ("off" or "metadata" or "falloc" or "full"))
        {
            throw BlockException.Invalid($"Parameter '{r.FullName("preallocation")}' does not accept value '{prealloc}'");
        }

        return new LuksCreateOptions
        {
            Size = size,
            Crypto = crypto,
            Preallocation = prealloc,
        };
    }
}
