using ExportServer.Block.Core;
using ExportServer.Block.Exports;

namespace ExportServer.UnitTests.Exports;

/// <summary>An export whose clients and shutdown the test controls.</summary>
internal sealed class FakeExport(BlockExportSettings settings, string type, string color) : BlockExport(settings)
{
    public string Color { get; } = color;

    public int Clients { get; set; }

    public bool FailShutdown { get; set; }

    public List<bool> Shutdowns { get; } = new();

    public override string Type { get; } = type;

    public override int ClientCount => Clients;

    public override ValueTask RequestShutdownAsync(bool hard)
    {
        if (FailShutdown)
        {
            throw new BlockException(Errno.EBUSY, "busy");
        }

        Shutdowns.Add(hard);
        Clients = 0;
        return default;
    }
}
