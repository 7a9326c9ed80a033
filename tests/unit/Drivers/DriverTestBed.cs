using System.Diagnostics;
using System.Text.Json.Nodes;
using ExportServer.Block;
using ExportServer.Block.Core;
using ExportServer.Block.Native;

namespace ExportServer.UnitTests.Drivers;

/// <summary>A graph with the built-in drivers and a temporary directory for image files; closes both.</summary>
internal sealed class DriverTestBed : IAsyncDisposable
{
    public DriverTestBed()
    {
        BlockDrivers.RegisterBuiltIn(Graph);
        Directory = System.IO.Directory.CreateTempSubdirectory("drivers-").FullName;
    }

    public BlockGraph Graph { get; } = new();

    public string Directory { get; }

    public string PathOf(string name) => Path.Combine(Directory, name);

    /// <summary>A file of <paramref name="length"/> bytes filled with a pattern derived from <paramref name="seed"/>.</summary>
    public string CreateFile(string name, int length, int seed = 1)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        var path = PathOf(name);
        File.WriteAllBytes(path, data);
        return path;
    }

    /// <summary>A sparse file: all holes.</summary>
    public string CreateSparseFile(string name, long length)
    {
        var path = PathOf(name);
        using var stream = new FileStream(path, FileMode.CreateNew);
        stream.SetLength(length);
        return path;
    }

    /// <summary>blockdev-add through the options path, as QMP and the command line do.</summary>
    public async Task<BlockNode> AddAsync(string json) =>
        await Graph.AddAsync(JsonNode.Parse(json)!.AsObject());

    public async Task<BlockException> AddFailsAsync(string json) =>
        await Xunit.Assert.ThrowsAsync<BlockException>(() => AddAsync(json));

    /// <summary>Bytes the file system has allocated to the file (st_blocks × 512).</summary>
    public static unsafe long AllocatedBytes(string path)
    {
        using var handle = File.OpenHandle(path);
        var stat = stackalloc byte[256];
        Xunit.Assert.Equal(0, LibC.FStat(handle.DangerousGetHandle(), stat));

        // st_blocks sits at offset 64 in both the x86_64 and the generic (aarch64) struct stat.
        return *(long*)(stat + 64) * 512;
    }

    /// <summary>Runs a QEMU tool to completion; the image locks it takes are what the tests are about.</summary>
    public static (int Exit, string Output) Run(string tool, params string[] args)
    {
        var info = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        using var process = Process.Start(info)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(30_000))
        {
            process.Kill();
            throw new TimeoutException($"{tool} did not finish");
        }

        return (process.ExitCode, stdout + stderr.Result);
    }

    public static string Json(string path) => JsonValue.Create(path).ToJsonString();

    public async ValueTask DisposeAsync()
    {
        await Graph.CloseAllAsync();
        System.IO.Directory.Delete(Directory, recursive: true);
    }
}
