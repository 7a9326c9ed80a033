using System.Text.Json;

namespace ExportServer.IntegrationTests.Support;

/// <summary>
/// Block-status maps as extents (start, length, value): `qemu-img map --output=json` of an image and
/// `nbdinfo --map --json` of an export, each merged so that servers that split runs differently compare equal.
/// For base:allocation the value is the NBD flags: 1 = hole, 2 = zero.
/// </summary>
internal static class BlockMap
{
    /// <summary>qemu-img's map of <paramref name="image"/> as base:allocation flags (-U: the image may be served).</summary>
    public static async Task<List<(long Start, long Length, int Value)>> QemuImgAsync(string image, string format)
    {
        var r = (await Tool.RunAsync("qemu-img", "map", "-U", "-f", format, "--output=json", image)).Check("qemu-img map");
        return Merge(JsonDocument.Parse(r.Stdout).RootElement.EnumerateArray().Select(e => (
            e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(),
            (e.GetProperty("data").GetBoolean() ? 0 : 1) | (e.GetProperty("zero").GetBoolean() ? 2 : 0))));
    }

    /// <summary>nbdinfo's map of metadata context <paramref name="context"/> of the export at <paramref name="uri"/>.</summary>
    public static async Task<List<(long Start, long Length, int Value)>> NbdinfoAsync(string uri, string context = "base:allocation")
    {
        var r = (await Tool.RunAsync("/usr/bin/nbdinfo", $"--map={context}", "--json", uri)).Check("nbdinfo --map");
        return Merge(JsonDocument.Parse(r.Stdout).RootElement.EnumerateArray().Select(e => (
            e.GetProperty("offset").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("type").GetInt32())));
    }

    /// <summary>Joins neighbouring extents with the same value.</summary>
    public static List<(long Start, long Length, int Value)> Merge(IEnumerable<(long Start, long Length, int Value)> extents)
    {
        var merged = new List<(long Start, long Length, int Value)>();
        foreach (var e in extents)
        {
            if (merged.Count > 0 && merged[^1].Value == e.Value && merged[^1].Start + merged[^1].Length == e.Start)
            {
                merged[^1] = (merged[^1].Start, merged[^1].Length + e.Length, e.Value);
            }
            else
            {
                merged.Add(e);
            }
        }

        return merged;
    }
}
