namespace ExportServer.Block.Core;

/// <summary>A backing file name as an image records it (QEMU's bs->backing_file) and the format it names, if any.</summary>
public sealed record BackingFileName(string Name, string? Format)
{
    /// <summary>QEMU's rule: a relative name is relative to the directory of the image that names it.</summary>
    public static string Resolve(string imageFileName, string name)
    {
        if (Path.IsPathRooted(name) || imageFileName.Length == 0)
        {
            return name;
        }

        var dir = Path.GetDirectoryName(imageFileName);
        return string.IsNullOrEmpty(dir) ? name : Path.Combine(dir, name);
    }
}
