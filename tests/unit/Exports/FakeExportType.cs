using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Exports;

namespace ExportServer.UnitTests.Exports;

/// <summary>A third export type, made without any daemon code: 'fake', with one option of its own and a refusal of its own.</summary>
internal sealed class FakeExportType(string name = "fake") : IBlockExportType
{
    public string Name { get; } = name;

    public List<FakeExport> Created { get; } = new();

    public Func<BlockExportSettings, ValueTask<BlockExport>> ReadOptions(OptionReader options)
    {
        var color = options.GetString("color") ?? "none";
        return async settings =>
        {
            var export = new FakeExport(settings, Name, color);
            if (color == "refused")
            {
                await export.DisposeAsync();
                throw BlockException.Invalid("Fake export refuses this color");
            }

            Created.Add(export);
            return export;
        };
    }
}
