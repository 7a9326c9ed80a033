using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// The generic opt-in contracts over qcow2's own operations: a backing child, internal snapshots
/// as QMP sees them, and the backing file name and format recorded in the header.
/// </summary>
public sealed partial class Qcow2Node : IInternalSnapshots, IBackingFileWriter
{
    public IReadOnlyList<InternalSnapshotInfo> ListSnapshots() => _snapshots.Select(ToInfo).ToList();

    async ValueTask<InternalSnapshotInfo> IInternalSnapshots.CreateSnapshotAsync(string name) =>
        ToInfo(await CreateSnapshotAsync(name).ConfigureAwait(false));

    async ValueTask<InternalSnapshotInfo> IInternalSnapshots.DeleteSnapshotAsync(string? id, string? name)
    {
        var match = _snapshots.Find(s => (id is null || s.Id == id) && (name is null || s.Name == name))
                    ?? throw new BlockException(Errno.ENOENT, $"Snapshot with id '{id}' and name '{name}' does not exist");

        // Ids are unique and looked up first, so the id names exactly the matched snapshot.
        await DeleteSnapshotAsync(match.Id).ConfigureAwait(false);
        return ToInfo(match);
    }

    /// <summary>
    /// Rewrites the header cluster with the new backing name and backing-format extension. The
    /// header is serialised before anything changes, so a name that does not fit leaves it as it was.
    /// </summary>
    public async ValueTask WriteBackingFileAsync(string? backingFile, string? backingFormat)
    {
        if (IsReadOnly)
        {
            throw new BlockException(Errno.EPERM, $"Node '{NodeName}' is read-only");
        }

        CheckNotCorrupt();
        await _meta.WaitAsync().ConfigureAwait(false);
        var (oldFile, oldFormat) = (_header.BackingFile, _header.BackingFormat);
        try
        {
            _header.BackingFile = backingFile;
            _header.BackingFormat = backingFile is null ? null : backingFormat;
            await WriteHeaderAsync().ConfigureAwait(false);
        }
        catch
        {
            (_header.BackingFile, _header.BackingFormat) = (oldFile, oldFormat);
            throw;
        }
        finally
        {
            _meta.Release();
        }
    }

    private static InternalSnapshotInfo ToInfo(Qcow2Snapshot s) =>
        new(s.Id, s.Name, s.VmStateSize, s.DateSeconds, s.DateNanoseconds, (long)s.VmClockNanoseconds);
}
