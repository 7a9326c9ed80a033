using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;

namespace ExportServer.Block.Jobs.Mirror;

/// <summary>
/// Mirror (and active commit, which is a mirror of the active layer into its base): copies the
/// source to the target, then keeps copying what is written to the source (a notifier marks the
/// bitmap once each write has reached the source, so a copy racing with it is redone) and reports
/// READY whenever nothing is left. block-job-complete ends it in sync and
/// pivots: <see cref="MirrorSettings.Pivot"/> moves the users of the source to the target. A soft
/// cancel once ready ends it in sync without pivoting; the target is then a consistent copy.
/// With copy-mode=write-blocking (<see cref="MirrorSettings.WriteBlocking"/>), a write that has
/// reached the source is also copied to the target before it completes, for every granule it
/// covers whole and every granule the job had already made clean; a granule it touches only in
/// part and that is still dirty is left to the background pass, as in QEMU (the write adds nothing
/// to convergence there, and the pass copies the whole granule). Once READY, the target then holds
/// every completed write, paused or not.
/// </summary>
public sealed class MirrorJob(BlockNode source, BlockNode target, MirrorSettings settings) : JobBody
{
    private static readonly TimeSpan IdlePoll = TimeSpan.FromMilliseconds(200);
    private DirtyBitmap? _bitmap;
    private CopyEngine? _engine;
    private WriteNotifier? _notifier;
    private bool _pivot;

    public override string Type => settings.Type;

    public override bool CanComplete => true;

    public override async Task RunAsync(JobControl control)
    {
        if (target.Length < source.Length)
        {
            throw BlockException.Invalid($"Source and target image have different sizes");
        }

        target.ExpectFlushedStream();

        _bitmap = new DirtyBitmap(source.Length, settings.Granularity);
        var chunk = Math.Clamp(settings.BufferSize / 16, settings.Granularity, 4 * 1024 * 1024);
        var inFlight = (int)Math.Clamp(settings.BufferSize / chunk, 1, 16);
        _engine = new CopyEngine(source, target, _bitmap, control, new CopyOptions(
            chunk, inFlight, settings.OnSourceError, settings.OnTargetError, RetryIgnored: true, DetectZeroes: settings.Sync == SyncMode.Full))
        {
            Copied = _ => control.SetLength(control.Offset + _bitmap.DirtyBytes),
        };
        _notifier = settings.WriteBlocking
            ? (_, offset, length) => WriteThroughAsync(control, offset, length)
            : (_, offset, length) =>
            {
                _bitmap.Set(offset, length);
                control.Kick();
                return ValueTask.CompletedTask;
            };
        TakeNodes(source, target);
        source.WrittenNotifiers.Add(_notifier);
        switch (settings.Sync)
        {
            case SyncMode.Full:
                _bitmap.SetAll();
                break;
            case SyncMode.Top:
                await ChainScan.MarkAsync(source, _bitmap, 1, settings.BaseDepth).ConfigureAwait(false);
                break;
        }

        control.SetLength(_bitmap.DirtyBytes);
        while (true)
        {
            await _engine.CopyDirtyAsync().ConfigureAwait(false);
            if (!control.IsReady && _bitmap.IsEmpty)
            {
                await target.FlushAsync().ConfigureAwait(false);
                control.MarkReady();
            }

            if (control.IsReady && (control.CompleteRequested || control.CancelRequested))
            {
                _pivot = control.CompleteRequested;
                await source.DrainAsync().ConfigureAwait(false);
                await _engine.CopyDirtyAsync().ConfigureAwait(false);
                await target.FlushAsync().ConfigureAwait(false);
                return;
            }

            if (_bitmap.IsEmpty)
            {
                await control.IdleAsync(IdlePoll).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Write-blocking: marks what the write touched, then copies now the granules it covers whole or
    /// that were clean before it (the engine's range lock orders this copy after any copy of the
    /// same granules already in flight). A failed copy stays dirty and goes to the job's error policy
    /// without the write waiting for the job (QEMU's do_sync_target_write): stop pauses the job,
    /// report fails it, ignore leaves the range to the background pass. The guest's write has
    /// succeeded either way.
    /// </summary>
    private async ValueTask WriteThroughAsync(JobControl control, long offset, long length)
    {
        var bitmap = _bitmap!;
        var g = bitmap.Granularity;
        var end = offset + length;
        var first = offset / g * g;
        var last = (end - 1) / g * g;
        var from = offset != first && bitmap.IsDirty(first) ? first + g : first;
        var until = end < Math.Min(last + g, bitmap.Length) && bitmap.IsDirty(last) ? last : Math.Min(last + g, bitmap.Length);
        bitmap.Set(offset, length);
        if (from < until && !control.CancelRequested)
        {
            try
            {
                await _engine!.CopyNowAsync(from, until - from, BeforeWriteErrors.Deferred).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // The job may stop before its loop looks again: its length shows what is left.
                bitmap.Set(from, until - from);
                control.SetLength(control.Offset + bitmap.DirtyBytes);
            }
        }

        control.Kick();
    }

    /// <summary>
    /// The pivot. Writes that reach the target while the users move are preceded by a copy of
    /// what the source still has dirty in their range, so the last copy never overwrites them.
    /// If that copy fails, the write fails with its error rather than waiting on the job's error
    /// policy in the middle of the pivot (or landing where the last copy would overwrite it).
    /// </summary>
    public override async ValueTask CommitAsync()
    {
        if (!_pivot || settings.Pivot is null)
        {
            return;
        }

        var engine = _engine!;
        WriteNotifier guard = (_, offset, length) => engine.CopyNowAsync(offset, length, BeforeWriteErrors.FailWrite);
        target.WriteNotifiers.Add(guard);
        try
        {
            await settings.Pivot().ConfigureAwait(false);
            await engine.CopyDirtyAsync().ConfigureAwait(false);
            await target.FlushAsync().ConfigureAwait(false);
        }
        finally
        {
            target.WriteNotifiers.Remove(guard);
        }
    }

    public override async ValueTask AbortAsync()
    {
        if (settings.OnAbort is not null)
        {
            await settings.OnAbort().ConfigureAwait(false);
        }
    }

    public override ValueTask CleanAsync()
    {
        if (_notifier is not null)
        {
            source.WrittenNotifiers.Remove(_notifier);
            _notifier = null;
            ReleaseNodes();
        }

        return ValueTask.CompletedTask;
    }
}
