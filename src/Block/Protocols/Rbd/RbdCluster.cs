using ExportServer.Block.Core;
using ExportServer.Block.Native;

namespace ExportServer.Block.Protocols.Rbd;

/// <summary>
/// A connection to a Ceph cluster and an I/O context on one pool (and namespace), made in QEMU's
/// order (qemu_rbd_connect): configuration file, file-name options, monitors, key and
/// authentication modes, then connect and pool. Failures carry QEMU's words and errno text.
/// </summary>
internal sealed class RbdCluster : IDisposable
{
    /// <summary>Seconds a request to the cluster may take unless the configuration says otherwise (see <see cref="BoundRequests"/>).</summary>
    public const string RequestTimeout = "30";

    private nint _cluster;
    private nint _ioctx;

    private RbdCluster(nint cluster, nint ioctx)
    {
        _cluster = cluster;
        _ioctx = ioctx;
    }

    public nint IoContext => _ioctx;

    /// <summary>Connects; blocking (the monitors answer within rados' own time-outs), so callers run it off the request path.</summary>
    public static RbdCluster Connect(NamedObjects objects, RbdLocation location, bool cache)
    {
        var r = LibRbd.rados_create(out var cluster, location.User);
        if (r < 0)
        {
            throw Failure(r, "error initializing");
        }

        try
        {
            // With no file named, the default locations are tried and their absence is no error.
            r = LibRbd.rados_conf_read_file(cluster, location.Conf);
            if (location.Conf is not null && r < 0)
            {
                throw Failure(r, $"error reading conf file {location.Conf}");
            }

            foreach (var (name, value) in location.ConfPairs)
            {
                r = LibRbd.rados_conf_set(cluster, name, value);
                if (r < 0)
                {
                    throw new BlockException(Errno.EINVAL, $"invalid conf option {name}: {LibC.StrError(-r)}");
                }
            }

            if (location.MonHost is { } monHost && (r = LibRbd.rados_conf_set(cluster, "mon_host", monHost)) < 0)
            {
                throw Failure(r, "Could not set 'mon_host'");
            }

            if (location.KeySecret is { } secretId)
            {
                r = LibRbd.rados_conf_set(cluster, "key", Secrets.Secrets.LookupBase64(objects, secretId));
                if (r < 0)
                {
                    throw Failure(r, "Could not set 'key'");
                }
            }

            if (location.AuthClientRequired is { } modes &&
                (r = LibRbd.rados_conf_set(cluster, "auth_client_required", string.Join(';', modes))) < 0)
            {
                throw Failure(r, "Could not set 'auth_client_required'");
            }

            // Only fails when the option does not exist, and librbd then does not cache.
            _ = LibRbd.rados_conf_set(cluster, "rbd_cache", cache ? "true" : "false");
            BoundRequests(cluster);

            r = LibRbd.rados_connect(cluster);
            if (r < 0)
            {
                throw Failure(r, "error connecting");
            }

            r = LibRbd.rados_ioctx_create(cluster, location.Pool, out var ioctx);
            if (r < 0)
            {
                throw Failure(r, $"error opening pool {location.Pool}");
            }

            var connection = new RbdCluster(cluster, ioctx);
            cluster = 0;
            try
            {
                connection.SetNamespace(location.Namespace);
                return connection;
            }
            catch
            {
                connection.Dispose();
                throw;
            }
        }
        finally
        {
            if (cluster != 0)
            {
                LibRbd.rados_shutdown(cluster);
            }
        }
    }

    /// <summary>
    /// librados waits for ever by default for a stopped OSD or monitor (a time-out of 0), and so
    /// would every request to the image. Unless the configuration sets its own, requests are bounded
    /// by <see cref="RequestTimeout"/>: they fail with ETIMEDOUT, which reaches NBD clients as EIO,
    /// and the image serves again once the cluster is back. librbd may make two cluster requests in a
    /// row for one of ours (an object map's update, then the data), so one may take twice as long.
    /// </summary>
    private static unsafe void BoundRequests(nint cluster)
    {
        var value = stackalloc byte[32];
        foreach (var option in (ReadOnlySpan<string>)["rados_osd_op_timeout", "rados_mon_op_timeout"])
        {
            // librados prints these as whole seconds.
            if (LibRbd.rados_conf_get(cluster, option, value, 32) == 0 && new ReadOnlySpan<byte>(value, 2).SequenceEqual("0\0"u8))
            {
                _ = LibRbd.rados_conf_set(cluster, option, RequestTimeout);
            }
        }
    }

    private void SetNamespace(string? ns)
    {
        if (!string.IsNullOrEmpty(ns))
        {
            var r = LibRbd.rbd_namespace_exists(_ioctx, ns, out var exists);
            if (r < 0)
            {
                throw Failure(r, "error checking namespace");
            }

            if (!exists)
            {
                throw new BlockException(Errno.ENOENT, $"namespace '{ns}' does not exist");
            }
        }

        LibRbd.rados_ioctx_set_namespace(_ioctx, ns);
    }

    /// <summary>QEMU's error_setg_errno: the message, then the errno's text.</summary>
    public static BlockException Failure(int r, string message) => new((Errno)(-r), $"{message}: {LibC.StrError(-r)}");

    public void Dispose()
    {
        if (_ioctx != 0)
        {
            LibRbd.rados_ioctx_destroy(_ioctx);
            _ioctx = 0;
        }

        if (_cluster != 0)
        {
            LibRbd.rados_shutdown(_cluster);
            _cluster = 0;
        }
    }
}
