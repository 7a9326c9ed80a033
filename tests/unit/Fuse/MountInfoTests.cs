using ExportServer.Fuse;
using Xunit;

namespace ExportServer.UnitTests.Fuse;

public sealed class MountInfoTests
{
    private const string Fixture =
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n" +
        "42 22 0:39 / /tmp/ft/mp rw,nosuid,nodev,relatime - fuse /dev/fuse rw,user_id=0,group_id=0,default_permissions,allow_other,max_read=1048576\n" +
        "43 22 0:40 / /tmp/with\\040space/disk.img rw,nosuid,nodev shared:7 master:2 - fuse.sshfs host: rw\n" +
        "44 22 0:41 / /tmp/ft/mp rw - tmpfs tmpfs rw\n";

    [Fact]
    public void ParsesDeviceTypeAndMountPoint()
    {
        Assert.True(MountInfo.TryParse(Fixture.Split('\n')[1], out var m));
        Assert.Equal("/tmp/ft/mp", m.MountPoint);
        Assert.Equal("fuse", m.FsType);
        Assert.Equal(0, m.Major);
        Assert.Equal(39, m.Minor);
        Assert.True(m.IsFuse);
    }

    [Fact]
    public void UnescapesOctalAndSkipsOptionalTags()
    {
        var m = MountInfo.Find(Fixture, "/tmp/with space/disk.img");
        Assert.NotNull(m);
        Assert.Equal("fuse.sshfs", m.Value.FsType);
        Assert.True(m.Value.IsFuse);
    }

    [Fact]
    public void TheTopmostMountWins()
    {
        var m = MountInfo.Find(Fixture, "/tmp/ft/mp");
        Assert.Equal("tmpfs", m!.Value.FsType);
        Assert.False(m.Value.IsFuse);
        Assert.Null(MountInfo.Find(Fixture, "/tmp/ft"));
    }

    [Fact]
    public void RejectsMalformedLines()
    {
        Assert.False(MountInfo.TryParse("garbage", out _));
        Assert.False(MountInfo.TryParse("1 2 x:y / /a rw - ext4 /dev/x rw", out _));
        Assert.False(MountInfo.TryParse("1 2 0:1 / /a rw ext4 /dev/x rw", out _));
    }
}
