using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Block.Filters.Throttle;
using Xunit;

namespace ExportServer.UnitTests.Throttle;

/// <summary>throttle-group properties and QEMU's checks (messages as qemu-storage-daemon prints them).</summary>
public sealed class ThrottleGroupOptionsTests
{
    private static ThrottleConfig Read(string json) => ThrottleGroupOptions.Read(new OptionReader(JsonNode.Parse(json)!.AsObject()));

    [Theory]
    [InlineData("""{"limits":{"iops-total":-1}}""", "bps/iops/max values must be within [0, 1000000000000000]")]
    [InlineData("""{"limits":{"iops-total":1000000000000001}}""", "bps/iops/max values must be within [0, 1000000000000000]")]
    [InlineData("""{"limits":{"iops-total":100,"iops-total-max":50}}""", "bps_max/iops_max cannot be lower than bps/iops")]
    [InlineData("""{"limits":{"bps-total":100,"bps-read":10}}""", "bps/iops/max total values and read/write values cannot be used at the same time")]
    [InlineData("""{"limits":{"iops-total-max":50}}""", "bps_max/iops_max require corresponding bps/iops values")]
    [InlineData("""{"limits":{"iops-total":100,"iops-total-max-length":0}}""", "the burst length cannot be 0")]
    [InlineData("""{"limits":{"iops-total-max-length":5}}""", "burst length set without burst rate")]
    [InlineData("""{"limits":{"iops-size":-1}}""", "iops size requires an iops value to be set")]
    [InlineData("""{"limits":{"iops-total":1,"iops-total-max":2,"iops-total-max-length":5000000000}}""", "iops-total-max-length value must be in the range [0, 4294967295]")]
    [InlineData("""{"limits":{"iops-total":1,"iops-total-max":2000000000,"iops-total-max-length":500000000}}""", "burst length too high for this burst rate")]
    [InlineData("""{"limits":{"bogus":1}}""", "Parameter 'limits.bogus' is unexpected")]
    [InlineData("""{"limits":{"iops-total":"abc"}}""", "Parameter 'limits.iops-total' expects integer")]
    [InlineData("""{"x-iops-total":-5}""", "Property values cannot be negative")]
    [InlineData("""{"x-iops-total-max-length":5000000000}""", "x-iops-total-max-length value must be in therange [0, 4294967295]")]
    public void BadLimitsAreRefusedWithQemusMessage(string json, string message)
    {
        var e = Assert.Throws<BlockException>(() => Read(json));
        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void LimitsAndLegacyPropertiesFillTheBuckets()
    {
        var c = Read("""{"limits":{"iops-read":"100","iops-read-max":200,"iops-read-max-length":3,"bps-write":4096,"iops-size":8192},"x-bps-total-max":0}""");
        Assert.Equal(100UL, c.Avg[(int)ThrottleBucketKind.IopsRead]);
        Assert.Equal(200UL, c.Max[(int)ThrottleBucketKind.IopsRead]);
        Assert.Equal(3UL, c.BurstLength[(int)ThrottleBucketKind.IopsRead]);
        Assert.Equal(4096UL, c.Avg[(int)ThrottleBucketKind.BpsWrite]);
        Assert.Equal(8192UL, c.OpSize);
        Assert.Equal(1UL, c.BurstLength[(int)ThrottleBucketKind.BpsTotal]);

        var legacy = Read("""{"x-iops-total":50,"x-bps-total":"1000"}""");
        Assert.Equal(50UL, legacy.Avg[(int)ThrottleBucketKind.IopsTotal]);
        Assert.Equal(1000UL, legacy.Avg[(int)ThrottleBucketKind.BpsTotal]);
    }
}
