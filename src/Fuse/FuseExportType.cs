using ExportServer.Block.Core.Options;
using ExportServer.Block.Exports;
using Microsoft.Extensions.Logging;

namespace ExportServer.Fuse;

/// <summary>type=fuse (QAPI's BlockExportOptionsFuse): the node as one regular file mounted over 'mountpoint'.</summary>
public sealed class FuseExportType : IBlockExportType
{
    public const string TypeName = "fuse";

    private static readonly Dictionary<string, FuseAllowOther> s_allowOther = new(StringComparer.Ordinal)
    {
        ["on"] = FuseAllowOther.On, ["off"] = FuseAllowOther.Off, ["auto"] = FuseAllowOther.Auto,
    };

    private readonly ILogger? _logger;

    public FuseExportType(ILogger? logger)
    {
        _logger = logger;
    }

    public string Name => TypeName;

    public Func<BlockExportSettings, ValueTask<BlockExport>> ReadOptions(OptionReader options)
    {
        var mountPoint = options.RequireString("mountpoint");
        var growable = options.GetBool("growable", false);
        var allowOther = options.GetEnum("allow-other", s_allowOther) ?? FuseAllowOther.Auto;
        return async settings =>
        {
            var export = new FuseBlockExport(settings);
            try
            {
                export.Mount(new FuseExportOptions(settings.Id, export.Root, mountPoint)
                {
                    Writable = settings.Writable, Growable = growable, AllowOther = allowOther,
                }, _logger);
            }
            catch
            {
                await export.DisposeAsync().ConfigureAwait(false);
                throw;
            }

            return export;
        };
    }
}
