namespace ExportServer.Block.Formats.Qcow2;

/// <summary>Constants of the qcow2 on-disk format (QEMU docs/interop/qcow2.txt). All numbers are big-endian.</summary>
internal static class Qcow2Format
{
    public const uint Magic = 0x514649fb; // "QFI\xfb"

    public const int V2HeaderLength = 72;
    public const int V3HeaderLength = 104;

    /// <summary>The header length QEMU writes for v3: 104 bytes plus the compression type, padded to 8.</summary>
    public const int V3HeaderLengthWithCompression = 112;

    public const int MinClusterBits = 9;
    public const int MaxClusterBits = 21;

    /// <summary>QEMU's limits: 32 MiB of L1 table, 8 MiB of refcount table, 65536 snapshots, 1023-byte backing names.</summary>
    public const long MaxL1Bytes = 32L * 1024 * 1024;
    public const long MaxRefcountTableBytes = 8L * 1024 * 1024;
    public const int MaxSnapshots = 65536;
    public const int MaxBackingFileName = 1023;

    // crypt_method values: none, legacy AES-CBC, LUKS (header in the crypto header extension).
    public const uint CryptNone = 0;
    public const uint CryptAes = 1;
    public const uint CryptLuks = 2;

    // Incompatible feature bits.
    public const ulong IncompatDirty = 1UL << 0;
    public const ulong IncompatCorrupt = 1UL << 1;
    public const ulong IncompatDataFile = 1UL << 2;
    public const ulong IncompatCompression = 1UL << 3;
    public const ulong IncompatExtendedL2 = 1UL << 4;
    public const ulong IncompatKnown = IncompatDirty | IncompatCorrupt | IncompatDataFile | IncompatCompression | IncompatExtendedL2;

    // Compatible feature bits.
    public const ulong CompatLazyRefcounts = 1UL << 0;

    // Autoclear feature bits.
    public const ulong AutoclearBitmaps = 1UL << 0;
    public const ulong AutoclearDataFileRaw = 1UL << 1;

    // Header extension types.
    public const uint ExtEnd = 0;
    public const uint ExtBackingFormat = 0xe2792aca;
    public const uint ExtFeatureTable = 0x6803f857;
    public const uint ExtCrypto = 0x0537be77;
    public const uint ExtBitmaps = 0x23852875;
    public const uint ExtDataFile = 0x44415441;

    public const byte CompressionZlib = 0;
    public const byte CompressionZstd = 1;

    // L1/L2 entry bits.
    public const ulong OffsetMask = 0x00fffffffffffe00UL;
    public const ulong FlagCopied = 1UL << 63;
    public const ulong FlagCompressed = 1UL << 62;
    public const ulong FlagZero = 1UL;
    public const ulong L1ReservedMask = 0x7f000000000001ffUL;

    /// <summary>Extended L2: 32 subclusters, bitmap word low half = allocated, high half = reads as zero.</summary>
    public const int SubclustersPerCluster = 32;
    public const ulong BitmapAllAllocated = 0x00000000ffffffffUL;
    public const ulong BitmapAllZeroes = 0xffffffff00000000UL;

    public const int CompressedSectorSize = 512;
}
