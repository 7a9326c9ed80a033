using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Formats.Qcow2;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>A graph with the qcow2 driver and the in-memory file driver, for opening images made by qemu-img.</summary>
internal sealed class Qcow2Harness : IAsyncDisposable
{
    public Qcow2Harness()
    {
        Graph.Register(Files);
        Graph.Register(new Qcow2Driver());
    }

    public BlockGraph Graph { get; } = new();

    public InMemoryFileDriver Files { get; }  = new();

    /// <summary>Opens <paramref name="path"/> as qcow2; <paramref name="extra"/> adds options (JSON object text).</summary>
    public async Task<Qcow2Node> OpenAsync(string path, string? extra = null, bool readOnly = false)
    {
        var options = extra is null ? new JsonObject() : (JsonObject)JsonNode.Parse(extra)!;
        options["driver"] = "qcow2";
        options["file"] = new JsonObject { ["driver"] = "file", ["filename"] = path };
        if (readOnly)
        {
            options["read-only"] = true;
        }

        return (Qcow2Node)await Graph.AddAsync(options);
    }

    /// <summary>Writes the in-memory bytes of an opened file back to disk (for qemu-img check/compare).</summary>
    public void Save(string path, string? to = null) => File.WriteAllBytes(to ?? path, Files.Opened[path].Snapshot());

    public static async Task<byte[]> ReadAllAsync(BlockNode node)
    {
        var data = new byte[node.Length];
        for (long off = 0; off < data.Length; off += 4 * 1024 * 1024)
        {
            var n = (int)Math.Min(4 * 1024 * 1024, data.Length - off);
            await node.ReadAsync(off, data.AsMemory((int)off, n));
        }

        return data;
    }

    public async ValueTask DisposeAsync() => await Graph.CloseAllAsync();
}
