using System.Runtime.InteropServices;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// The few libargon2 (Debian libargon2-1) calls LUKS2 key slots need: argon2_ctx, which lets the
/// number of threads differ from the number of lanes (the result depends on the lanes only).
/// </summary>
internal static partial class Argon2Native
{
    private const string Library = "libargon2.so.1";

    /// <summary>ARGON2_VERSION_13, the version cryptsetup derives keys with.</summary>
    public const uint Version13 = 0x13;

    public const int Ok = 0;

    /// <summary>argon2_type.</summary>
    public enum Type
    {
        Argon2d = 0,
        Argon2i = 1,
        Argon2id = 2,
    }

    /// <summary>argon2_context (argon2.h), field for field.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct Context
    {
        public byte* Out;
        public uint OutLength;
        public byte* Password;
        public uint PasswordLength;
        public byte* Salt;
        public uint SaltLength;
        public byte* Secret;
        public uint SecretLength;
        public byte* AssociatedData;
        public uint AssociatedDataLength;
        public uint TimeCost;
        public uint MemoryCostKiB;
        public uint Lanes;
        public uint Threads;
        public uint Version;
        public nint AllocateCallback;
        public nint FreeCallback;
        public uint Flags;
    }

    [LibraryImport(Library, EntryPoint = "argon2_ctx")]
    public static unsafe partial int Hash(Context* context, Type type);

    [LibraryImport(Library, EntryPoint = "argon2_error_message")]
    public static partial nint ErrorMessage(int code);
}
