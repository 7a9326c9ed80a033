using ExportServer.Block.Core;

namespace ExportServer.Block.Filters.Throttle;

/// <summary>
/// The limits of a throttle group, as QEMU's ThrottleConfig: per bucket an average rate, an
/// optional burst rate and a burst length in seconds, plus the size that counts as one operation.
/// Values are unsigned as in QEMU, so a negative input wraps and is refused by <see cref="Validate"/>.
/// </summary>
internal sealed class ThrottleConfig
{
    public const int BucketCount = 6;

    /// <summary>QEMU's THROTTLE_VALUE_MAX: the largest accepted rate.</summary>
    public const ulong ValueMax = 1_000_000_000_000_000;

    public ThrottleConfig()
    {
        Array.Fill(BurstLength, 1UL);
    }

    /// <summary>Units (bytes or operations) per second the bucket leaks; 0 means no limit.</summary>
    public ulong[] Avg { get; } = new ulong[BucketCount];

    /// <summary>Burst rate allowed for <see cref="BurstLength"/> seconds; 0 means bursts of a tenth of a second at the average rate.</summary>
    public ulong[] Max { get; } = new ulong[BucketCount];

    public ulong[] BurstLength { get; } = new ulong[BucketCount];

    /// <summary>Bytes that count as one operation for the iops buckets; 0 means every request is one.</summary>
    public ulong OpSize { get; set; }

    public static bool IsBytes(ThrottleBucketKind kind) => kind <= ThrottleBucketKind.BpsWrite;

    /// <summary>QEMU's throttle_is_valid, with its messages and its order of checks.</summary>
    public void Validate()
    {
        if (Mixed(Avg, ThrottleBucketKind.BpsTotal) || Mixed(Avg, ThrottleBucketKind.IopsTotal) ||
            Mixed(Max, ThrottleBucketKind.BpsTotal) || Mixed(Max, ThrottleBucketKind.IopsTotal))
        {
            throw BlockException.Invalid("bps/iops/max total values and read/write values cannot be used at the same time");
        }

        if (OpSize != 0 && Avg[(int)ThrottleBucketKind.IopsTotal] == 0 && Avg[(int)ThrottleBucketKind.IopsRead] == 0 &&
            Avg[(int)ThrottleBucketKind.IopsWrite] == 0)
        {
            throw BlockException.Invalid("iops size requires an iops value to be set");
        }

        for (var i = 0; i < BucketCount; i++)
        {
            ulong avg = Avg[i], max = Max[i], length = BurstLength[i];
            if (avg > ValueMax || max > ValueMax)
            {
                throw BlockException.Invalid($"bps/iops/max values must be within [0, {ValueMax}]");
            }

            if (length == 0)
            {
                throw BlockException.Invalid("the burst length cannot be 0");
            }

            if (length > 1 && max == 0)
            {
                throw BlockException.Invalid("burst length set without burst rate");
            }

            if (max != 0 && avg == 0)
            {
                throw BlockException.Invalid("bps_max/iops_max require corresponding bps/iops values");
            }

            if (max != 0 && max < avg)
            {
                throw BlockException.Invalid("bps_max/iops_max cannot be lower than bps/iops");
            }

            if (max != 0 && length > ValueMax / max)
            {
                throw BlockException.Invalid("burst length too high for this burst rate");
            }
        }
    }

    private static bool Mixed(ulong[] values, ThrottleBucketKind total) =>
        values[(int)total] != 0 && (values[(int)total + 1] != 0 || values[(int)total + 2] != 0);
}
