using System.Text;

namespace ExportServer.Fuse;

/// <summary>
/// One line of /proc/self/mountinfo: "ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTIONS [TAGS…] - FSTYPE SOURCE SUPER".
/// Paths escape space, tab, newline and backslash as three octal digits (\040).
/// </summary>
internal readonly record struct MountInfo(string MountPoint, string FsType, int Major, int Minor)
{
    public const string ProcPath = "/proc/self/mountinfo";

    public bool IsFuse => FsType == "fuse" || FsType.StartsWith("fuse.", StringComparison.Ordinal);

    /// <summary>The last (topmost) mount on <paramref name="mountPoint"/>, if any.</summary>
    public static MountInfo? Find(string text, string mountPoint)
    {
        MountInfo? found = null;
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (TryParse(line, out var m) && m.MountPoint == mountPoint)
            {
                found = m;
            }
        }

        return found;
    }

    public static MountInfo? FindCurrent(string mountPoint) => Find(File.ReadAllText(ProcPath), mountPoint);

    public static bool TryParse(string line, out MountInfo info)
    {
        info = default;
        var fields = line.Split(' ');
        var separator = fields.Length < 7 ? -1 : Array.IndexOf(fields, "-", 6);
        if (separator < 0 || separator + 1 >= fields.Length)
        {
            return false;
        }

        var device = fields[2].Split(':');
        if (device.Length != 2 || !int.TryParse(device[0], out var major) || !int.TryParse(device[1], out var minor))
        {
            return false;
        }

        info = new MountInfo(Unescape(fields[4]), fields[separator + 1], major, minor);
        return true;
    }

    private static string Unescape(string s)
    {
        if (!s.Contains('\\'))
        {
            return s;
        }

        var sb = new StringBuilder(s.Length);
        for (var i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && IsOctal(s, i + 1))
            {
                sb.Append((char)(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) | (s[i + 3] - '0')));
                i += 3;
            }
            else
            {
                sb.Append(s[i]);
            }
        }

        return sb.ToString();
    }

    private static bool IsOctal(string s, int start)
    {
        for (var i = start; i < start + 3; i++)
        {
            if (i >= s.Length || s[i] < '0' || s[i] > '7')
            {
                return false;
            }
        }

        return true;
    }
}
