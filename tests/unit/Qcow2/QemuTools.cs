using System.Diagnostics;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>Runs qemu-img / qemu-io for tests; a failing tool fails the test with its output.</summary>
internal static class QemuTools
{
    public static (int Code, string Output) Run(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {tool}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result + stderr);
    }

    public static string Ok(string tool, params string[] args)
    {
        var (code, output) = Run(tool, args);
        if (code != 0)
        {
            throw new InvalidOperationException($"{tool} {string.Join(' ', args)} failed ({code}): {output}");
        }

        return output;
    }

    /// <summary>The guest content of an image as qemu-img sees it.</summary>
    public static byte[] ConvertToRaw(string image, string dir, string? snapshot = null)
    {
        var raw = Path.Combine(dir, Guid.NewGuid().ToString("N") + ".raw");
        if (snapshot is not null)
        {
            Ok("qemu-img", "convert", "-U", "-l", "snapshot.name=" + snapshot, "-O", "raw", image, raw);
        }
        else
        {
            Ok("qemu-img", "convert", "-U", "-O", "raw", image, raw);
        }

        var bytes = File.ReadAllBytes(raw);
        File.Delete(raw);
        return bytes;
    }

    /// <summary>qemu-img check exit code: 0 clean, 2 corruptions, 3 leaks only.</summary>
    public static (int Code, string Output) Check(string image) => Run("qemu-img", "check", "-U", image);
}
