using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Formats.Luks;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// Options of a new qcow2 image, with QEMU's defaults: the one record behind blockdev-create,
/// <c>export-server create -o</c>, job targets and snapshot overlays (the last three translate
/// qemu-img's names into blockdev-create's and bind through <see cref="Read"/>, as QEMU's qcow2_co_create_opts).
/// </summary>
public sealed record Qcow2CreateOptions
{
    /// <summary>QEMU's names of the preallocation modes (QAPI PreallocMode as qcow2 accepts it).</summary>
    public static readonly IReadOnlyDictionary<string, Qcow2Preallocation> PreallocationModes = new Dictionary<string, Qcow2Preallocation>(StringComparer.Ordinal)
    {
        ["off"] = Qcow2Preallocation.Off,
        ["metadata"] = Qcow2Preallocation.Metadata,
        ["falloc"] = Qcow2Preallocation.Falloc,
        ["full"] = Qcow2Preallocation.Full,
    };

    public required long Size { get; init; }

    public int ClusterSize { get; init; } = 65536;

    /// <summary>"1.1" (version 3, the default) or "0.10" (version 2).</summary>
    public string Compat { get; init; } = "1.1";

    public string? BackingFile { get; init; }

    public string? BackingFormat { get; init; }

    public Qcow2Preallocation Preallocation { get; init; }

    public bool LazyRefcounts { get; init; }

    public bool ExtendedL2 { get; init; }

    /// <summary>"zlib" or "zstd".</summary>
    public string CompressionType { get; init; } = "zlib";

    /// <summary>Name of the external data file recorded in the header (the node is passed to the creator).</summary>
    public string? DataFile { get; init; }

    public bool DataFileRaw { get; init; }

    public int RefcountBits { get; init; } = 16;

    /// <summary>encrypt with format luks: the LUKS volume to put in the image; null for an unencrypted image.</summary>
    internal LuksCryptoOptions? Encrypt { get; init; }

    /// <summary>
    /// Binds BlockdevCreateOptionsQcow2 apart from the nodes (file, data-file), which the creator reads:
    /// size, version, backing-file, backing-fmt, cluster-size, preallocation, lazy-refcounts,
    /// refcount-bits, extended-l2, compression-type, data-file-raw, encrypt.
    /// </summary>
    public static Qcow2CreateOptions Read(OptionReader r)
    {
        var options = new Qcow2CreateOptions
        {
            Size = r.GetSize("size") ?? throw BlockException.Invalid($"Parameter '{r.FullName("size")}' is missing"),
            Compat = r.GetString("version") ?? "v3",
            BackingFile = r.GetString("backing-file"),
            BackingFormat = r.GetString("backing-fmt"),
            ClusterSize = (int)Math.Min(r.GetSize("cluster-size") ?? 65536, int.MaxValue),
            Preallocation = r.GetEnum("preallocation", PreallocationModes) ?? Qcow2Preallocation.Off,
            LazyRefcounts = r.GetBool("lazy-refcounts", false),
            RefcountBits = (int)Math.Min(r.GetInt("refcount-bits") ?? 16, int.MaxValue),
            ExtendedL2 = r.GetBool("extended-l2", false),
            CompressionType = r.GetString("compression-type") ?? "zlib",
            DataFileRaw = r.GetBool("data-file-raw", false),
            Encrypt = ReadEncrypt(r),
        };
        if (options.BackingFormat is not null && options.BackingFile is null)
        {
            throw BlockException.Invalid("Backing format cannot be used without backing file");
        }

        if (options.Encrypt is not null && options.Preallocation != Qcow2Preallocation.Off)
        {
            // Preallocated clusters would hold zeroes that decrypt to noise.
            throw BlockException.NotSupported("Preallocation is not supported with encryption here (use preallocation=off)");
        }

        return options;
    }

    /// <summary>QAPI QCryptoBlockCreateOptions: luks with its options; the legacy qcow (AES) format is only read here, never made.</summary>
    private static LuksCryptoOptions? ReadEncrypt(OptionReader r)
    {
        if (r.GetObject("encrypt") is not { } e)
        {
            return null;
        }

        var format = e.RequireString("format");
        switch (format)
        {
            case "luks":
                var options = LuksCryptoOptions.Read(e);
                e.EnsureAllConsumed();
                return options;
            case "qcow":
                throw BlockException.NotSupported(
                    "Creating qcow2 images with the legacy AES encryption is not supported (it is read-only here); use encrypt.format=luks");
            default:
                throw BlockException.Invalid($"Parameter '{e.FullName("format")}' does not accept value '{format}'");
        }
    }
}
