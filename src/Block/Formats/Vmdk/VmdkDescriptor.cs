using System.Globalization;
using System.Text;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// A VMDK text descriptor (a file of its own, or embedded in a sparse extent): the content ID of
/// this layer and of its parent, the create type, the parent's file name and the extent lines.
/// The text is kept so that a new CID can be written without touching the rest.
/// </summary>
internal sealed class VmdkDescriptor
{
    /// <summary>More extents than this in one descriptor is taken as garbage (each opens a file).</summary>
    public const int MaxExtents = 4096;

    private VmdkDescriptor(string text)
    {
        Text = text;
    }

    public string Text { get; private set; }

    public string? CreateType { get; private set; }

    public uint? Cid { get; private set; }

    public uint? ParentCid { get; private set; }

    public string? ParentFileNameHint { get; private set; }

    public IReadOnlyList<VmdkExtentLine> Extents { get; private set; } = [];

    /// <summary>
    /// Parses <paramref name="bytes"/> up to the first NUL. Keys are matched per line (key = value,
    /// quotes optional); lines that are neither keys nor extents are kept but ignored.
    /// </summary>
    public static VmdkDescriptor Parse(ReadOnlySpan<byte> bytes, string fileName)
    {
        var nul = bytes.IndexOf((byte)0);
        if (nul >= 0)
        {
            bytes = bytes[..nul];
        }

        var d = new VmdkDescriptor(Encoding.UTF8.GetString(bytes));
        var extents = new List<VmdkExtentLine>();
        foreach (var raw in d.Text.Split('\n'))
        {
            var line = raw.TrimEnd('\r').Trim();
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }

            if (VmdkExtentLine.TryParse(line) is { } extent)
            {
                if (extents.Count == MaxExtents)
                {
                    throw BlockException.Invalid($"vmdk: descriptor '{fileName}' lists more than {MaxExtents} extents");
                }

                extents.Add(extent);
                continue;
            }

            var eq = line.IndexOf('=');
            if (eq <= 0)
            {
                continue;
            }

            var key = line[..eq].Trim();
            var value = Unquote(line[(eq + 1)..].Trim());
            switch (key)
            {
                case "createType":
                    d.CreateType ??= value;
                    break;
                case "CID":
                    d.Cid ??= ParseCid(value, "CID", fileName);
                    break;
                case "parentCID":
                    d.ParentCid ??= ParseCid(value, "parentCID", fileName);
                    break;
                case "parentFileNameHint":
                    d.ParentFileNameHint ??= value;
                    break;
            }
        }

        d.Extents = extents;
        return d;
    }

    private static string Unquote(string value) =>
        value.Length >= 2 && value[0] == '"' && value[^1] == '"' ? value[1..^1] : value;

    /// <summary>A CID is up to 8 hex digits (QEMU reads it with %x).</summary>
    private static uint ParseCid(string value, string key, string fileName) =>
        uint.TryParse(value, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var cid)
            ? cid
            : throw BlockException.Invalid($"vmdk: descriptor '{fileName}' has an invalid {key} '{value}'");

    /// <summary>Replaces the value of the CID line (8 hex digits, as VMware writes it) and returns the new text.</summary>
    public string WithCid(uint cid)
    {
        var sb = new StringBuilder(Text.Length);
        var replaced = false;
        foreach (var raw in Text.Split('\n'))
        {
            if (sb.Length > 0)
            {
                sb.Append('\n');
            }

            var eq = raw.IndexOf('=');
            if (!replaced && eq > 0 && raw[..eq].Trim() == "CID")
            {
                var cr = raw.EndsWith('\r') ? "\r" : string.Empty;
                sb.Append(CultureInfo.InvariantCulture, $"{raw[..(eq + 1)]}{cid:x8}{cr}");
                replaced = true;
            }
            else
            {
                sb.Append(raw);
            }
        }

        Text = sb.ToString();
        Cid = cid;
        return Text;
    }

    /// <summary>The descriptor qemu-img writes for a new image.</summary>
    public static string Build(
        uint cid, uint parentCid, string createType, string? parentFileName, IEnumerable<VmdkExtentLine> extents,
        string hwVersion, long cylinders, int heads, string adapterType, string toolsVersion)
    {
        var sb = new StringBuilder();
        sb.Append("# Disk DescriptorFile\n");
        sb.Append("version=1\n");
        sb.Append(CultureInfo.InvariantCulture, $"CID={cid:x8}\n");
        sb.Append(CultureInfo.InvariantCulture, $"parentCID={parentCid:x8}\n");
        sb.Append(CultureInfo.InvariantCulture, $"createType=\"{createType}\"\n");
        if (parentFileName is not null)
        {
            sb.Append(CultureInfo.InvariantCulture, $"parentFileNameHint=\"{parentFileName}\"");
        }

        sb.Append("\n# Extent description\n");
        foreach (var e in extents)
        {
            sb.Append(e).Append('\n');
        }

        sb.Append("\n# The Disk Data Base\n#DDB\n\n");
        sb.Append(CultureInfo.InvariantCulture, $"ddb.virtualHWVersion = \"{hwVersion}\"\n");
        sb.Append(CultureInfo.InvariantCulture, $"ddb.geometry.cylinders = \"{cylinders}\"\n");
        sb.Append(CultureInfo.InvariantCulture, $"ddb.geometry.heads = \"{heads}\"\n");
        sb.Append("ddb.geometry.sectors = \"63\"\n");
        sb.Append(CultureInfo.InvariantCulture, $"ddb.adapterType = \"{adapterType}\"\n");
        sb.Append(CultureInfo.InvariantCulture, $"ddb.toolsVersion = \"{toolsVersion}\"\n");
        return sb.ToString();
    }
}
