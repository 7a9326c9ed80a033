using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>Images made with qemu-img for tests.</summary>
internal static class TestImages
{
    /// <summary>
    /// Creates <paramref name="name"/> in <paramref name="dir"/> with qemu-img options, optionally over
    /// base.qcow2 (filled with 0xb1) of <paramref name="baseSize"/>, named relatively as QEMU users do.
    /// </summary>
    public static string Create(TempDir dir, string name, string options, string size, bool withBacking, string baseSize)
    {
        var args = new List<string> { "create", "-f", "qcow2", "-o", options };
        if (withBacking)
        {
            Ok("qemu-img", "create", "-f", "qcow2", dir["base.qcow2"], baseSize);
            Ok("qemu-io", "-f", "qcow2", "-c", $"write -P 0xb1 0 {baseSize}", dir["base.qcow2"]);
            args.AddRange(["-b", "base.qcow2", "-F", "qcow2"]);
        }

        args.AddRange([dir[name], size]);
        Ok("qemu-img", [.. args]);
        return dir[name];
    }
}
