using System.Runtime.InteropServices;

namespace ExportServer.Block.Protocols.Rbd;

/// <summary>
/// The librados and librbd calls the rbd driver uses (Debian's librados2 and librbd1, Ceph 16).
/// Every call returns 0 or a negative errno unless said otherwise; handles are opaque pointers.
/// The libraries are loaded on first use, so a daemon without Ceph installed only fails when an
/// rbd node is opened.
/// </summary>
internal static unsafe partial class LibRbd
{
    private const string Rados = "librados.so.2";
    private const string Rbd = "librbd.so.1";

    /// <summary>rbd_write_zeroes: allocate the zeroed range instead of deallocating it.</summary>
    public const int WriteZeroesThickProvision = 1;

    public const ulong FeatureFastDiff = 1UL << 4;
    public const ulong FlagFastDiffInvalid = 1UL << 1;

    /// <summary>sizeof(rbd_image_info_t): size, obj_size, num_objs, order, block_name_prefix[24], parent_pool, parent_name[96].</summary>
    public const int ImageInfoSize = 160;
    public const int ImageInfoObjectSizeOffset = 8;

    [LibraryImport(Rados, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rados_create(out nint cluster, string? id);

    [LibraryImport(Rados, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rados_conf_read_file(nint cluster, string? path);

    [LibraryImport(Rados, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rados_conf_set(nint cluster, string option, string value);

    /// <summary>Copies the option's value, NUL-terminated, into <paramref name="buffer"/>; -ENAMETOOLONG when it does not fit.</summary>
    [LibraryImport(Rados, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rados_conf_get(nint cluster, string option, byte* buffer, nuint length);

    [LibraryImport(Rados)]
    public static partial int rados_connect(nint cluster);

    [LibraryImport(Rados)]
    public static partial void rados_shutdown(nint cluster);

    [LibraryImport(Rados, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rados_ioctx_create(nint cluster, string pool, out nint ioctx);

    [LibraryImport(Rados)]
    public static partial void rados_ioctx_destroy(nint ioctx);

    [LibraryImport(Rados, StringMarshalling = StringMarshalling.Utf8)]
    public static partial void rados_ioctx_set_namespace(nint ioctx, string? nspace);

    [LibraryImport(Rbd, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rbd_namespace_exists(nint ioctx, string name, [MarshalAs(UnmanagedType.U1)] out bool exists);

    [LibraryImport(Rbd, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rbd_open(nint ioctx, string name, out nint image, string? snapName);

    [LibraryImport(Rbd)]
    public static partial int rbd_close(nint image);

    [LibraryImport(Rbd, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rbd_create(nint ioctx, string name, ulong size, ref int order);

    [LibraryImport(Rbd)]
    public static partial int rbd_stat(nint image, byte* info, nuint infoSize);

    [LibraryImport(Rbd)]
    public static partial int rbd_get_size(nint image, out ulong size);

    [LibraryImport(Rbd)]
    public static partial int rbd_get_features(nint image, out ulong features);

    [LibraryImport(Rbd)]
    public static partial int rbd_get_flags(nint image, out ulong flags);

    [LibraryImport(Rbd)]
    public static partial int rbd_resize(nint image, ulong size);

    [LibraryImport(Rbd)]
    public static partial int rbd_aio_create_completion(nint arg, delegate* unmanaged<nint, nint, void> callback, out nint completion);

    [LibraryImport(Rbd)]
    public static partial nint rbd_aio_get_return_value(nint completion);

    [LibraryImport(Rbd)]
    public static partial void rbd_aio_release(nint completion);

    [LibraryImport(Rbd)]
    public static partial int rbd_aio_read(nint image, ulong offset, nuint length, byte* buffer, nint completion);

    [LibraryImport(Rbd)]
    public static partial int rbd_aio_write(nint image, ulong offset, nuint length, byte* buffer, nint completion);

    [LibraryImport(Rbd)]
    public static partial int rbd_aio_discard(nint image, ulong offset, ulong length, nint completion);

    [LibraryImport(Rbd)]
    public static partial int rbd_aio_write_zeroes(nint image, ulong offset, nuint length, nint completion, int zeroFlags, int opFlags);

    [LibraryImport(Rbd)]
    public static partial int rbd_aio_flush(nint image, nint completion);

    /// <summary>Calls <paramref name="callback"/>(offset, length, exists, arg) for each extent that differs from <paramref name="fromSnap"/> (null: from nothing).</summary>
    [LibraryImport(Rbd, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rbd_diff_iterate2(nint image, string? fromSnap, ulong offset, ulong length, byte includeParent, byte wholeObject,
        delegate* unmanaged<ulong, nuint, int, nint, int> callback, nint arg);
}
