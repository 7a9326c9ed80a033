using System.Buffers.Binary;
using System.Numerics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Formats.Luks;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// Creates qcow2 images: validates the options with QEMU's rules and messages, writes the header
/// (with a feature name table), an empty refcount structure describing the metadata and an L1 table
/// for the size, then preallocates through the node when asked.
/// </summary>
public static class Qcow2Creator
{
    /// <summary>
    /// Formats <paramref name="file"/> (its old contents are discarded) as a new image; an encrypted
    /// one takes its passphrase from <paramref name="objects"/>.
    /// </summary>
    public static async ValueTask CreateAsync(BlockNode file, Qcow2CreateOptions options, BlockNode? dataFile = null, NamedObjects? objects = null)
    {
        var header = Validate(options);
        var luksRegion = options.Encrypt is { } encrypt ? MakeLuksRegion(encrypt, objects) : [];
        if (header.HasDataFile && dataFile is null)
        {
            throw BlockException.Invalid("qcow2: the external data file node is needed to create an image with a data file");
        }

        var cs = header.ClusterSize;
        var l1Entries = Qcow2Header.L1EntriesFor(options.Size, header.ClusterBits, header.ExtendedL2);
        if (l1Entries * 8 > Qcow2Format.MaxL1Bytes)
        {
            throw BlockException.Invalid("The image size is too large for file format 'qcow2' (try using a larger cluster size)");
        }

        // Layout: header, refcount table (t clusters), refcount blocks (k), L1 table, LUKS header region.
        var l1Clusters = (l1Entries * 8 + cs - 1) / cs;
        var cryptoClusters = ((long)luksRegion.Length + cs - 1) / cs;
        var perBlock = (long)cs * 8 / (1 << header.RefcountOrder);
        long t = 1, k = 1;
        while (true)
        {
            var total = 1 + t + k + l1Clusters + cryptoClusters;
            var nk = (total + perBlock - 1) / perBlock;
            var nt = (nk * 8 + cs - 1) / cs;
            if (nk == k && nt == t)
            {
                break;
            }

            (k, t) = (nk, nt);
        }

        header.RefcountTableOffset = cs;
        header.RefcountTableClusters = (int)t;
        header.L1Size = (int)l1Entries;
        header.L1TableOffset = (1 + t + k) * cs;
        var cryptoOffset = header.L1TableOffset + (l1Clusters * cs);
        var end = cryptoOffset + (cryptoClusters * cs);
        if (luksRegion.Length > 0)
        {
            header.CryptMethod = Qcow2Format.CryptLuks;
            header.CryptoHeader = (cryptoOffset, luksRegion.Length);
        }

        var image = new byte[end];
        header.Write(image.AsSpan(0, cs));
        luksRegion.CopyTo(image.AsSpan((int)cryptoOffset));
        var used = 1 + t + k + l1Clusters + cryptoClusters;
        for (long b = 0; b < k; b++)
        {
            var blockOffset = (1 + t + b) * cs;
            BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan((int)(cs + (b * 8))), (ulong)blockOffset);
            for (var c = b * perBlock; c < Math.Min(used, (b + 1) * perBlock); c++)
            {
                Qcow2Node.SetRefcountEntry(image.AsSpan((int)blockOffset, cs), c - (b * perBlock), 1 << header.RefcountOrder, 1);
            }
        }

        if (file.Length != 0)
        {
            await file.TruncateAsync(0).ConfigureAwait(false);
        }

        await file.TruncateAsync(end).ConfigureAwait(false);
        await file.WriteAsync(0, image).ConfigureAwait(false);
        await file.FlushAsync().ConfigureAwait(false);
        if (dataFile is not null && header.DataFileRaw && dataFile.Length < options.Size)
        {
            await dataFile.TruncateAsync(options.Size).ConfigureAwait(false);
        }

        var prealloc = options.Preallocation;
        if (header.DataFileRaw && prealloc == Qcow2Preallocation.Off)
        {
            // A raw data file must be mapped 1:1 from the start.
            prealloc = Qcow2Preallocation.Metadata;
        }

        if (prealloc != Qcow2Preallocation.Off)
        {
            var node = await Qcow2Node.OpenAsync("qcow2-create", readOnly: false, file, new Qcow2Options { CacheCleanInterval = 0 }).ConfigureAwait(false);
            if (dataFile is not null)
            {
                node.AttachDataFile(dataFile);
            }

            await node.PreallocateAsync(prealloc).ConfigureAwait(false);
            await node.FlushAsync().ConfigureAwait(false);
            await node.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Creates the file at <paramref name="path"/> through its protocol and formats it; a data file
    /// named in the options is created next to it the same way (QEMU's qcow2_co_create_opts).
    /// </summary>
    public static async ValueTask CreateAsync(BlockGraph graph, string path, Qcow2CreateOptions options)
    {
        var empty = new JsonObject { ["size"] = 0 };
        await ImageCreation.CreateProtocolFileAsync(graph, path, empty).ConfigureAwait(false);
        var file = await ImageCreation.OpenProtocolAsync(graph, path).ConfigureAwait(false);
        BlockNode? data = null;
        try
        {
            if (options.DataFile is { } dataName)
            {
                var dataPath = BackingFileName.Resolve(path, dataName);
                await ImageCreation.CreateProtocolFileAsync(graph, dataPath, empty).ConfigureAwait(false);
                data = await ImageCreation.OpenProtocolAsync(graph, dataPath).ConfigureAwait(false);
            }

            await CreateAsync(file, options, data, graph.Objects).ConfigureAwait(false);
        }
        finally
        {
            if (data is not null)
            {
                await graph.RemoveAsync(data.NodeName).ConfigureAwait(false);
            }

            await graph.RemoveAsync(file.NodeName).ConfigureAwait(false);
        }
    }

    /// <summary>A new LUKS header region (QEMU puts it in clusters of its own, named by the crypto header extension).</summary>
    private static byte[] MakeLuksRegion(LuksCryptoOptions encrypt, NamedObjects? objects)
    {
        var passphrase = LuksCreator.Passphrase(objects ?? new NamedObjects(), encrypt.KeySecret);
        try
        {
            return LuksCreator.MakeRegion(encrypt, passphrase);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(passphrase);
        }
    }

    private static Qcow2Header Validate(Qcow2CreateOptions o)
    {
        var version = o.Compat switch
        {
            "1.1" or "v3" => 3,
            "0.10" or "v2" => 2,
            _ => throw BlockException.Invalid($"Invalid compatibility level: '{o.Compat}'"),
        };
        if (o.Size < 0 || o.Size % 512 != 0)
        {
            throw BlockException.Invalid("Image size must be a multiple of 512 bytes");
        }

        if (!BitOperations.IsPow2(o.ClusterSize) || o.ClusterSize < 512 || o.ClusterSize > 2 * 1024 * 1024)
        {
            throw BlockException.Invalid("Cluster size must be a power of two between 512 and 2048k");
        }

        if (!BitOperations.IsPow2(o.RefcountBits) || o.RefcountBits > 64)
        {
            throw BlockException.Invalid("Refcount width must be a power of two and may not exceed 64 bits");
        }

        if (version < 3)
        {
            if (o.RefcountBits != 16)
            {
                throw BlockException.Invalid("Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)");
            }

            if (o.LazyRefcounts)
            {
                throw BlockException.Invalid("Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)");
            }

            if (o.ExtendedL2)
            {
                throw BlockException.Invalid("Extended L2 entries are only supported with compatibility level 1.1 and above (use compat=1.1 or greater)");
            }

            if (o.DataFile is not null)
            {
                throw BlockException.Invalid("External data files are only supported with compatibility level 1.1 and above (use compat=1.1 or greater)");
            }

            if (o.CompressionType != "zlib")
            {
                throw BlockException.Invalid("Non-zlib compression type is only supported with compatibility level 1.1 and above (use compat=1.1 or greater)");
            }
        }

        if (o.ExtendedL2 && o.ClusterSize < 16384)
        {
            throw BlockException.Invalid("Extended L2 entries are only supported with cluster sizes of at least 16384 bytes");
        }

        if (o.DataFileRaw && o.DataFile is null)
        {
            throw BlockException.Invalid("data-file-raw requires data-file");
        }

        if (o.BackingFile is not null && o.DataFileRaw)
        {
            throw BlockException.Invalid("Backing file and data-file-raw cannot be used at the same time");
        }

        if (o.BackingFile is not null && o.Preallocation != Qcow2Preallocation.Off && !o.ExtendedL2)
        {
            throw BlockException.Invalid("Backing file and preallocation can only be used at the same time if extended_l2 is on");
        }

        var compression = o.CompressionType switch
        {
            "zlib" => Qcow2Format.CompressionZlib,
            "zstd" => Qcow2Format.CompressionZstd,
            _ => throw BlockException.Invalid($"Parameter 'compression-type' does not accept value '{o.CompressionType}'"),
        };

        var h = new Qcow2Header
        {
            Version = version,
            ClusterBits = BitOperations.Log2((uint)o.ClusterSize),
            Size = o.Size,
            RefcountOrder = BitOperations.Log2((uint)o.RefcountBits),
            HeaderLength = version >= 3 ? Qcow2Format.V3HeaderLengthWithCompression : Qcow2Format.V2HeaderLength,
            CompressionType = compression,
            BackingFile = o.BackingFile,
        };
        if (o.LazyRefcounts)
        {
            h.CompatibleFeatures |= Qcow2Format.CompatLazyRefcounts;
        }

        if (o.ExtendedL2)
        {
            h.IncompatibleFeatures |= Qcow2Format.IncompatExtendedL2;
        }

        if (compression != Qcow2Format.CompressionZlib)
        {
            h.IncompatibleFeatures |= Qcow2Format.IncompatCompression;
        }

        if (o.BackingFile is not null && o.BackingFormat is not null)
        {
            h.BackingFormat = o.BackingFormat;
        }

        if (o.DataFile is not null)
        {
            h.IncompatibleFeatures |= Qcow2Format.IncompatDataFile;
            h.DataFile = o.DataFile;
            if (o.DataFileRaw)
            {
                h.AutoclearFeatures |= Qcow2Format.AutoclearDataFileRaw;
            }
        }

        if (version >= 3)
        {
            h.Extensions.Add(new Qcow2HeaderExtension(Qcow2Format.ExtFeatureTable, FeatureTable()));
        }

        return h;
    }

    /// <summary>The feature name table QEMU writes into new images.</summary>
    private static byte[] FeatureTable()
    {
        (byte Type, byte Bit, string Name)[] features =
        [
            (0, 0, "dirty bit"), (0, 1, "corrupt bit"), (0, 2, "external data file"), (0, 3, "compression type"),
            (0, 4, "extended L2 entries"), (1, 0, "lazy refcounts"), (2, 0, "bitmaps"), (2, 1, "raw external data"),
        ];
        var table = new byte[features.Length * 48];
        for (var i = 0; i < features.Length; i++)
        {
            table[i * 48] = features[i].Type;
            table[(i * 48) + 1] = features[i].Bit;
            Encoding.ASCII.GetBytes(features[i].Name).CopyTo(table, (i * 48) + 2);
        }

        return table;
    }
}
