using ExportServer.Block.Bitmaps;
using ExportServer.Block.Core;

namespace ExportServer.Block.Jobs.Stream;

/// <summary>
/// block-stream and intermediate block-commit: copies into <paramref name="target"/> every range
/// whose content comes from the layers of <paramref name="source"/>'s chain that the settings name,
/// reading through <paramref name="source"/> (so what a layer above holds wins). Stream copies a
/// chain's middle into its top (source = target = the top, layers from depth 2); commit copies the
/// layers from its top down to the base into the base. Nothing else changes until the job
/// succeeds: then <see cref="LayerCopySettings.Finish"/> shortens the chain.
/// </summary>
public sealed class LayerCopyJob(BlockNode source, BlockNode target, LayerCopySettings settings) : JobBody
{
    /// <summary>Set in the job's own flow, so its writes to the target pass the guard untouched.</summary>
    private static readonly AsyncLocal<bool> OwnWrite = new();

    private CopyEngine? _engine;
    private WriteNotifier? _guard;

    public override string Type => settings.Type;

    /// <summary>As in QEMU, the job's length is the whole image from the moment it starts.</summary>
    public override void Attach(JobControl control) => control.SetLength(source.Length);

    public override async Task RunAsync(JobControl control)
    {
        target.ExpectFlushedStream();
        var bitmap = new DirtyBitmap(source.Length, settings.Granularity);
        _engine = new CopyEngine(source, target, bitmap, control, new CopyOptions(
            settings.ChunkSize, settings.MaxInFlight, settings.OnError, settings.OnError, RetryIgnored: true));
        TakeNodes(source, target);
        if (settings.GuardWrites)
        {
            // A guest write first copies what is still to be streamed under it, so a copy reading
            // older data can never land over the new data. Writes that entered before the guard
            // are drained before the scan decides what to copy.
            _guard = (_, offset, length) => OwnWrite.Value ? ValueTask.CompletedTask : CopyBeforeWriteAsync(offset, length);
            target.WriteNotifiers.Add(_guard);
            await target.DrainAsync().ConfigureAwait(false);
        }

        OwnWrite.Value = true;
        await ChainScan.MarkAsync(source, bitmap, settings.From, settings.Until).ConfigureAwait(false);
        var progress = new ScanProgress(bitmap, control);
        _engine.Copied = _ => progress.Advance();
        await _engine.CopyDirtyAsync().ConfigureAwait(false);
        progress.Finish();
        await target.FlushAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// A guest write neither waits for nor fails on this copy, as with QEMU's copy-on-read: if it
    /// fails, the range stays to be copied, the job meets the error itself when it gets there (and
    /// then reads the guest's data through the top), and the write goes on to succeed or fail on
    /// its own. Before, a stop policy held the guest's write until the job was resumed.
    /// </summary>
    private async ValueTask CopyBeforeWriteAsync(long offset, long length)
    {
        OwnWrite.Value = true;
        try
        {
            await _engine!.CopyNowAsync(offset, length, BeforeWriteErrors.FailWrite).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Left to the background pass; see above.
        }
    }

    public override async ValueTask CommitAsync()
    {
        if (settings.Finish is not null)
        {
            await settings.Finish().ConfigureAwait(false);
        }
    }

    public override async ValueTask CleanAsync()
    {
        if (_guard is not null)
        {
            target.WriteNotifiers.Remove(_guard);
            _guard = null;
        }

        ReleaseNodes();

        if (settings.Clean is not null)
        {
            await settings.Clean().ConfigureAwait(false);
        }
    }
}
