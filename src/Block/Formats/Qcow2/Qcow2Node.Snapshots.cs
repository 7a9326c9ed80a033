using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>Internal snapshots: the snapshot table, and opening one snapshot read-only.</summary>
public sealed partial class Qcow2Node
{
    /// <summary>The internal snapshots, in table order.</summary>
    public IReadOnlyList<Qcow2Snapshot> Snapshots => _snapshots;

    private async ValueTask LoadSnapshotsAsync()
    {
        if (_header.SnapshotCount == 0)
        {
            _snapshots = [];
            return;
        }

        if ((_header.SnapshotsOffset & (_clusterSize - 1)) != 0)
        {
            throw BlockException.Invalid($"qcow2: snapshots_offset 0x{_header.SnapshotsOffset:x} unaligned in '{FileName}'");
        }

        // Entries are at most 40 + 1024 + 2 * 65535 bytes; read what the file holds, capped.
        var max = Math.Min(_file.Length - _header.SnapshotsOffset, (long)_header.SnapshotCount * (40 + 1024 + 131070 + 8));
        var bytes = new byte[(int)Math.Min(max, 64L * 1024 * 1024)];
        await _file.ReadAsync(_header.SnapshotsOffset, bytes).ConfigureAwait(false);
        _snapshots = Qcow2Snapshot.ReadTable(bytes, _header.SnapshotCount, _clusterSize, _file.Length);
    }

    /// <summary>Finds a snapshot by id first, then by name (as QEMU does).</summary>
    public Qcow2Snapshot? FindSnapshot(string idOrName) =>
        _snapshots.Find(s => s.Id == idOrName) ?? _snapshots.Find(s => s.Name == idOrName);

    /// <summary>Makes the node show the snapshot's content (read-only): its L1 table and its disk size.</summary>
    private async ValueTask SelectSnapshotAsync(string idOrName)
    {
        var s = FindSnapshot(idOrName)
                ?? throw new BlockException(Errno.ENOENT, $"qcow2: snapshot '{idOrName}' not found in '{FileName}'");
        _l1 = await ReadL1Async(s.L1TableOffset, s.L1Size).ConfigureAwait(false);
        _l1Offset = s.L1TableOffset;
        Length = s.DiskSize ?? Length;
    }
}
