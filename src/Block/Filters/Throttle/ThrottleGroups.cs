using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Filters.Throttle;

/// <summary>object-add / object-del of throttle-group objects, kept among the graph's named objects.</summary>
public sealed class ThrottleGroups : IObjectType
{
    public string QomType => "throttle-group";

    /// <summary>Creates the group from its properties (the reader's remaining keys) and enters it under <paramref name="id"/>.</summary>
    public void Add(NamedObjects objects, string id, OptionReader options)
    {
        var config = ThrottleGroupOptions.Read(options);
        options.EnsureAllConsumed();
        objects.Add(id, new ThrottleGroup(id, config));
    }

    /// <summary>Deletes the group <paramref name="id"/>; false if there is none, refused while a throttle node uses it.</summary>
    public bool TryDelete(NamedObjects objects, string id)
    {
        if (objects.TryGet<ThrottleGroup>(id) is not { } group)
        {
            return false;
        }

        if (group.MemberCount > 0)
        {
            throw BlockException.Invalid($"object '{id}' is in use, can not be deleted");
        }

        objects.Remove(id);
        group.Dispose();
        return true;
    }
}
