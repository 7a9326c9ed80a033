using System.ComponentModel;
using System.Diagnostics;
using System.Runtime.InteropServices;
using ExportServer.Block.Core;
using ExportServer.Fuse.Native;
using Microsoft.Extensions.Logging;

namespace ExportServer.Fuse;

/// <summary>The libfuse session: mounting, the receive threads, and an orderly unmount.</summary>
public sealed partial class FuseExport
{
    /// <summary>How long the receive threads get to see the unmount before the connection is aborted.</summary>
    private static readonly TimeSpan s_unmountGrace = TimeSpan.FromSeconds(5);

    private static readonly TimeSpan s_abortGrace = TimeSpan.FromSeconds(5);

    private const int EINTR = 4;

    private GCHandle _self;
    private nint _session;
    private string? _connection;
    private Task[] _receivers = [];
    private int _disposed;

    private void Start(FuseExportOptions options)
    {
        _self = GCHandle.Alloc(_operations);
        try
        {
            FuseCallbacks.InstallLog(_logger);
            if (options.AllowOther == FuseAllowOther.Auto)
            {
                // allow_other needs root or user_allow_other in /etc/fuse.conf; without, mount privately.
                if (!TryMount(allowOther: true, out var reason))
                {
                    if (_logger is not null)
                    {
                        FuseLog.AllowOtherFallback(_logger, Id, reason);
                    }

                    MountOrThrow(allowOther: false);
                }
            }
            else
            {
                MountOrThrow(options.AllowOther == FuseAllowOther.On);
            }

            var mount = MountInfo.FindCurrent(MountPoint);
            _connection = mount is { IsFuse: true } m ? ((m.Major << 20) | m.Minor).ToString(System.Globalization.CultureInfo.InvariantCulture) : null;
            _receivers = new Task[Math.Max(options.ReceiveThreads, 1)];
            for (var i = 0; i < _receivers.Length; i++)
            {
                var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _receivers[i] = done.Task;
                var thread = new Thread(() => ReceiveLoop(done), 256 * 1024)
                {
                    IsBackground = true,
                    Name = $"fuse-{Id}-{i}",
                };
                thread.Start();
            }
        }
        catch
        {
            if (_session != 0)
            {
                LibFuse.SessionUnmount(_session);
                LibFuse.SessionDestroy(_session);
                _session = 0;
            }

            _self.Free();
            throw;
        }
    }

    private void MountOrThrow(bool allowOther)
    {
        if (!TryMount(allowOther, out var reason))
        {
            throw BlockException.Io($"Failed to mount FUSE export '{Id}' on '{MountPoint}': {reason}");
        }
    }

    /// <summary>
    /// Creates a session with QEMU's mount options (max_read, default_permissions, optionally
    /// allow_other) and mounts it; on failure nothing is left behind and libfuse's message is returned.
    /// </summary>
    private unsafe bool TryMount(bool allowOther, out string reason)
    {
        var options = $"max_read={FuseOperations.MaxRead},default_permissions{(allowOther ? ",allow_other" : string.Empty)}";
        string[] argv = [string.Empty, "-o", options];
        var strings = new nint[argv.Length];
        var vector = (byte**)NativeMemory.AllocZeroed((nuint)(argv.Length + 1), (nuint)sizeof(nint));
        nint session = 0;
        FuseCallbacks.TakeLastMessage();
        try
        {
            for (var i = 0; i < argv.Length; i++)
            {
                strings[i] = Marshal.StringToCoTaskMemUTF8(argv[i]);
                vector[i] = (byte*)strings[i];
            }

            var args = new FuseArgs { Argc = argv.Length, Argv = vector, Allocated = 0 };
            var ops = FuseCallbacks.CreateOps();
            session = LibFuse.SessionNew(&args, &ops, (nuint)sizeof(FuseLowLevelOps), GCHandle.ToIntPtr(_self));
            LibFuse.OptFreeArgs(&args);
            if (session == 0)
            {
                reason = FuseCallbacks.TakeLastMessage() ?? "could not create the FUSE session";
                return false;
            }

            if (LibFuse.SessionMount(session, MountPoint) != 0)
            {
                reason = FuseCallbacks.TakeLastMessage() ?? "mount failed";
                LibFuse.SessionDestroy(session);
                return false;
            }

            _operations.AllowOther = allowOther;
            _session = session;
            reason = string.Empty;
            return true;
        }
        finally
        {
            foreach (var s in strings)
            {
                Marshal.FreeCoTaskMem(s);
            }

            NativeMemory.Free(vector);
        }
    }

    /// <summary>
    /// One dedicated thread: receive a request, let libfuse decode it and call the operation (which
    /// hands I/O to async methods), repeat until the kernel ends the connection (ENODEV once the
    /// file system is unmounted and no longer in use, or aborted).
    /// </summary>
    private unsafe void ReceiveLoop(TaskCompletionSource done)
    {
        FuseBuf buf = default;
        try
        {
            while (LibFuse.SessionExited(_session) == 0)
            {
                var n = LibFuse.SessionReceiveBuf(_session, &buf);
                if (n == -EINTR)
                {
                    continue;
                }

                if (n <= 0)
                {
                    if (n < 0 && _logger is not null)
                    {
                        FuseLog.ReceiveFailed(_logger, Id, -n);
                    }

                    break;
                }

                _operations.Enter();
                try
                {
                    LibFuse.SessionProcessBuf(_session, &buf);
                }
                finally
                {
                    _operations.Leave();
                }
            }
        }
        finally
        {
            if (buf.Mem != 0)
            {
                Libc.Free(buf.Mem);
            }

            done.TrySetResult();
        }
    }

    /// <summary>
    /// Detaches the mount, then waits until the kernel ends the connection: at once when nobody
    /// has the file open, otherwise when the last user closes it. Requests keep being answered
    /// meanwhile. If the file stays open beyond a grace period the connection is aborted through
    /// /sys/fs/fuse/connections (when available); if even that fails this returns anyway and the
    /// session is freed by the last receive thread.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        Detach();
        var finished = FinishAsync();
        if (!await Completes(finished, s_unmountGrace).ConfigureAwait(false) && _connection is not null)
        {
            if (_logger is not null)
            {
                FuseLog.AbortingConnection(_logger, Id, MountPoint, _connection);
            }

            TryAbortConnection(_connection);
            await Completes(finished, s_abortGrace).ConfigureAwait(false);
        }

        Unregister(MountPoint);
        if (_logger is not null)
        {
            FuseLog.Unmounted(_logger, Id, MountPoint);
        }
    }

    /// <summary>
    /// Lazily unmounts while keeping the session's device open, so requests of processes that still
    /// hold the file are answered, not left hanging (fuse_session_unmount would close the device).
    /// </summary>
    private void Detach()
    {
        if (Libc.GetEUid() == 0 && Libc.Umount2(MountPoint, Libc.MntDetach) == 0)
        {
            return;
        }

        try
        {
            using var fusermount = Process.Start(new ProcessStartInfo("fusermount3", ["-u", "-q", "-z", "--", MountPoint])
            {
                UseShellExecute = false,
            });
            fusermount?.WaitForExit();
        }
        catch (Exception e) when (e is Win32Exception or InvalidOperationException)
        {
            // Already unmounted from outside, or fusermount3 missing: the threads end with the connection.
        }
    }

    /// <summary>After the receive threads have ended and the last request was answered, frees the session.</summary>
    private async Task FinishAsync()
    {
        await Task.WhenAll(_receivers).ConfigureAwait(false);
        await _operations.WhenIdleAsync().ConfigureAwait(false);

        // The connection is gone: this only closes the device and frees libfuse's copy of the path.
        LibFuse.SessionUnmount(_session);
        LibFuse.SessionDestroy(_session);
        _session = 0;
        _self.Free();
    }

    private static async Task<bool> Completes(Task task, TimeSpan timeout)
    {
        try
        {
            await task.WaitAsync(timeout).ConfigureAwait(false);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    private static void TryAbortConnection(string connection)
    {
        try
        {
            File.WriteAllText($"/sys/fs/fuse/connections/{connection}/abort", "1");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // fusectl not mounted or not permitted: the threads end when the last user closes the file.
        }
    }
}
