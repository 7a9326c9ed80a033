using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Filters.Throttle;

/// <summary>
/// Reads a throttle-group's properties: the 'limits' object (QAPI ThrottleLimits) and the legacy
/// flat 'x-iops-total' style properties, with QEMU's checks and messages.
/// </summary>
internal static class ThrottleGroupOptions
{
    private static readonly string[] s_names = ["bps-total", "bps-read", "bps-write", "iops-total", "iops-read", "iops-write"];

    public static ThrottleConfig Read(OptionReader options)
    {
        var config = new ThrottleConfig();
        for (var i = 0; i < ThrottleConfig.BucketCount; i++)
        {
            var name = "x-" + s_names[i];
            if (Legacy(options, name) is { } avg)
            {
                config.Avg[i] = avg;
            }

            if (Legacy(options, name + "-max") is { } max)
            {
                config.Max[i] = max;
            }

            if (Legacy(options, name + "-max-length") is { } length)
            {
                // QEMU's message for the flat properties lacks the space before "range".
                config.BurstLength[i] = length <= uint.MaxValue
                    ? length
                    : throw BlockException.Invalid($"{name}-max-length value must be in therange [0, {uint.MaxValue}]");
            }
        }

        if (Legacy(options, "x-iops-size") is { } opSize)
        {
            config.OpSize = opSize;
        }

        if (options.GetObject("limits") is { } limits)
        {
            ReadLimits(limits, config);
        }

        config.Validate();
        return config;
    }

    /// <summary>A flat property: an integer that may not be negative.</summary>
    private static ulong? Legacy(OptionReader options, string key) => options.GetInt(key) switch
    {
        null => null,
        < 0 => throw BlockException.Invalid("Property values cannot be negative"),
        var v => (ulong)v.Value,
    };

    /// <summary>QEMU's throttle_limits_to_config: signed values taken as unsigned, burst lengths limited to 32 bits.</summary>
    private static void ReadLimits(OptionReader limits, ThrottleConfig config)
    {
        var avg = new long?[ThrottleConfig.BucketCount];
        var max = new long?[ThrottleConfig.BucketCount];
        var length = new long?[ThrottleConfig.BucketCount];
        for (var i = 0; i < ThrottleConfig.BucketCount; i++)
        {
            avg[i] = limits.GetInt(s_names[i]);
            max[i] = limits.GetInt(s_names[i] + "-max");
            length[i] = limits.GetInt(s_names[i] + "-max-length");
        }

        var opSize = limits.GetInt("iops-size");
        limits.EnsureAllConsumed();

        for (var i = 0; i < ThrottleConfig.BucketCount; i++)
        {
            config.Avg[i] = avg[i] is { } a ? unchecked((ulong)a) : config.Avg[i];
            config.Max[i] = max[i] is { } m ? unchecked((ulong)m) : config.Max[i];
        }

        for (var i = 0; i < ThrottleConfig.BucketCount; i++)
        {
            if (length[i] is { } l)
            {
                config.BurstLength[i] = l <= uint.MaxValue
                    ? unchecked((ulong)l)
                    : throw BlockException.Invalid($"{s_names[i]}-max-length value must be in the range [0, {uint.MaxValue}]");
            }
        }

        if (opSize is { } size)
        {
            config.OpSize = unchecked((ulong)size);
        }
    }
}
