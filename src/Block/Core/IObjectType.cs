using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Core;

/// <summary>
/// A kind of user-created object (<c>--object</c>, <c>object-add</c>, <c>object-del</c>) kept among
/// the graph's named objects, where nodes and exports find it by id: secrets, throttle groups, TLS
/// credentials, authorization lists. The daemon holds a table of these by <see cref="QomType"/>.
/// </summary>
public interface IObjectType
{
    /// <summary>The <c>qom-type</c> that selects this kind.</summary>
    string QomType { get; }

    /// <summary>
    /// Creates the object from its properties (the reader's keys other than qom-type and id, which
    /// are consumed) and enters it under <paramref name="id"/>; refuses unknown or bad properties
    /// with QEMU's wording and leaves nothing behind when it does.
    /// </summary>
    void Add(NamedObjects objects, string id, OptionReader options);

    /// <summary>
    /// Deletes the object <paramref name="id"/> if it is of this kind: false if it is not, refused
    /// with QEMU's wording while something uses it.
    /// </summary>
    bool TryDelete(NamedObjects objects, string id);
}
