namespace ExportServer.Block.Protocols.File;

/// <summary>
/// A run of data [<see cref="Start"/>, <see cref="End"/>) that SEEK_DATA and SEEK_HOLE found in a
/// file. Writes only turn holes into data, so a run stays data until this node punches, zeroes or
/// truncates; those forget it.
/// </summary>
internal sealed record DataExtent(long Start, long End)
{
    public bool Contains(long offset) => offset >= Start && offset < End;
}
