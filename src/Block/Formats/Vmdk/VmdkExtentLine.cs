using System.Globalization;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>
/// One extent line of a descriptor: <c>RW 4192256 SPARSE "disk-s001.vmdk"</c> or
/// <c>RW 2048 FLAT "disk-flat.vmdk" 0</c> — access, size in sectors, type, file name and, for FLAT,
/// the extent's first sector in its file.
/// </summary>
internal sealed record VmdkExtentLine(string Access, long Sectors, string Type, string FileName, long FlatOffset)
{
    public const string Flat = "FLAT";
    public const string Sparse = "SPARSE";
    public const string Vmfs = "VMFS";
    public const string VmfsSparse = "VMFSSPARSE";
    public const string SeSparse = "SESPARSE";

    public bool IsFlat => Type is Flat or Vmfs;

    /// <summary>
    /// The extent a line describes, or null for a line that is not one QEMU uses (not RW, an unknown
    /// type, no sectors). A line of a known type with a missing or extra offset is an error, as in QEMU.
    /// </summary>
    public static VmdkExtentLine? TryParse(string line)
    {
        var rest = line.AsSpan().TrimStart();
        if (!NextWord(ref rest, out var access) || !NextWord(ref rest, out var sectorsText) || !NextWord(ref rest, out var type))
        {
            return null;
        }

        rest = rest.TrimStart();
        if (access.Length > 10 || type.Length > 10 || rest.Length == 0 || rest[0] != '"' ||
            !long.TryParse(sectorsText, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var sectors))
        {
            return null;
        }

        var close = rest[1..].IndexOf('"');
        if (close <= 0 || access is not "RW")
        {
            return null;
        }

        var fileName = rest.Slice(1, close).ToString();
        rest = rest[(close + 2)..].Trim();
        long? offset = null;
        if (rest.Length > 0 && NextWord(ref rest, out var offsetText) &&
            long.TryParse(offsetText, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var o))
        {
            offset = o;
        }

        var typeName = type.ToString();
        var valid = typeName switch
        {
            Flat => offset is >= 0,
            Vmfs => offset is null,
            _ => offset is null,
        };
        if (!valid)
        {
            throw BlockException.Invalid($"Invalid extent line: {line.TrimEnd('\r')}");
        }

        if (sectors <= 0 || typeName is not (Flat or Sparse or Vmfs or VmfsSparse or SeSparse))
        {
            return null;
        }

        return new VmdkExtentLine(access.ToString(), sectors, typeName, fileName, offset ?? 0);
    }

    private static bool NextWord(ref ReadOnlySpan<char> s, out ReadOnlySpan<char> word)
    {
        s = s.TrimStart();
        var end = s.IndexOfAny(' ', '\t');
        if (end < 0)
        {
            end = s.Length;
        }

        word = s[..end];
        s = s[end..];
        return word.Length > 0;
    }

    public override string ToString() =>
        IsFlat && Type == Flat
            ? string.Create(CultureInfo.InvariantCulture, $"{Access} {Sectors} {Type} \"{FileName}\" {FlatOffset}")
            : string.Create(CultureInfo.InvariantCulture, $"{Access} {Sectors} {Type} \"{FileName}\"");
}
