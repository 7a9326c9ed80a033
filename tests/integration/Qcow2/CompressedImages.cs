using System.Globalization;
using System.Text.RegularExpressions;
using ExportServer.IntegrationTests.Support;

namespace ExportServer.IntegrationTests.Qcow2;

/// <summary>Test data and qemu-img checks for images written with compressed clusters.</summary>
internal static class CompressedImages
{
    /// <summary>
    /// A raw file of <paramref name="compressible"/> bytes of repeated text (no zero block in it)
    /// followed by <paramref name="random"/> bytes of noise.
    /// </summary>
    public static string WriteRaw(string path, int compressible, int random)
    {
        var data = new byte[compressible + random];
        var line = "compressed clusters are packed at byte granularity; "u8;
        for (var i = 0; i < compressible; i++)
        {
            data[i] = (byte)(line[i % line.Length] + (i / 65536 % 5));
        }

        new Random(42).NextBytes(data.AsSpan(compressible));
        File.WriteAllBytes(path, data);
        return path;
    }

    /// <summary>
    /// qemu-img check finds no error and no leak, and reports this share of compressed clusters
    /// among the allocated ones (qemu-img 7.2's map has no 'compressed' field; check counts them).
    /// </summary>
    public static async Task AssertCheckCleanAsync(string image, double compressedPercent)
    {
        var r = await Tool.RunAsync("qemu-img", "check", "-U", image);
        if (r.ExitCode != 0 || !r.Stdout.Contains("No errors were found", StringComparison.Ordinal))
        {
            throw new Xunit.Sdk.XunitException($"qemu-img check {image} ({r.ExitCode}): {r.Stdout}{r.Stderr}");
        }

        var m = Regex.Match(r.Stdout, @"([0-9.]+)% compressed clusters");
        var actual = m.Success ? double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
        if (Math.Abs(actual - compressedPercent) > 0.01)
        {
            throw new Xunit.Sdk.XunitException($"qemu-img check {image}: {actual}% compressed clusters, expected {compressedPercent}%\n{r.Stdout}");
        }
    }
}
