using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// The qcow2 option overlap-check (QAPI Qcow2OverlapChecks: a template name, or an object of a
/// template and one switch per metadata structure). It is checked as QEMU checks it and then
/// accepted without effect: in QEMU it selects which metadata a write is compared against before
/// it goes out, a guard against its own bugs; this driver places every allocation after checking
/// it against the header, the L1 table and the refcount table, whatever the option says.
/// </summary>
internal static class Qcow2OverlapCheck
{
    private static readonly Dictionary<string, int> Templates = new()
    {
        ["none"] = 0, ["constant"] = 1, ["cached"] = 2, ["all"] = 3,
    };

    private static readonly string[] Switches =
    [
        "main-header", "active-l1", "active-l2", "refcount-table", "refcount-block",
        "snapshot-table", "inactive-l1", "inactive-l2", "bitmap-directory",
    ];

    public static void Read(OptionReader options)
    {
        const string key = "overlap-check";
        if (options.Has(key) && options.Raw(key) is not System.Text.Json.Nodes.JsonObject)
        {
            options.GetEnum(key, Templates);
            return;
        }

        if (options.GetObject(key) is not { } flags)
        {
            return;
        }

        // QEMU reads the object form through its legacy option parser, which names the member alone.
        if (flags.GetString("template") is { } template && !Templates.ContainsKey(template))
        {
            throw BlockException.Invalid($"Parameter 'template' does not accept value '{template}'");
        }

        foreach (var name in Switches)
        {
            flags.GetBool(name);
        }

        flags.EnsureAllConsumed();
    }
}
