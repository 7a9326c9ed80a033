using System.Runtime.InteropServices;
using ExportServer.Fuse.Native;
using Xunit;

namespace ExportServer.UnitTests.Fuse;

/// <summary>
/// The interop structs against libfuse 3.14 / glibc on x86_64. Expected sizes and offsets were
/// printed with offsetof/sizeof from the C headers (fuse_lowlevel.h, fuse_common.h, sys/stat.h,
/// sys/statvfs.h); the byte fixtures are those structs filled in C and dumped.
/// </summary>
public sealed class NativeLayoutTests
{
    private static byte[] Hex(params string[] parts) => Convert.FromHexString(string.Concat(parts));

    [Fact]
    public void LowLevelOpsSlotsSitAtTheHeaderOffsets()
    {
        Assert.Equal(352, Marshal.SizeOf<FuseLowLevelOps>());        // sizeof(struct fuse_lowlevel_ops): 44 pointers
        Assert.Equal(0, Offset<FuseLowLevelOps>("Init"));             // init
        Assert.Equal(8, Offset<FuseLowLevelOps>("Destroy"));          // destroy
        Assert.Equal(16, Offset<FuseLowLevelOps>("Lookup"));          // lookup
        Assert.Equal(24, Offset<FuseLowLevelOps>("Forget"));          // forget
        Assert.Equal(32, Offset<FuseLowLevelOps>("GetAttr"));         // getattr
        Assert.Equal(40, Offset<FuseLowLevelOps>("SetAttr"));         // setattr
        Assert.Equal(112, Offset<FuseLowLevelOps>("Open"));           // open (after readlink … link)
        Assert.Equal(120, Offset<FuseLowLevelOps>("Read"));           // read
        Assert.Equal(128, Offset<FuseLowLevelOps>("Write"));          // write
        Assert.Equal(136, Offset<FuseLowLevelOps>("Flush"));          // flush
        Assert.Equal(144, Offset<FuseLowLevelOps>("Release"));        // release
        Assert.Equal(152, Offset<FuseLowLevelOps>("Fsync"));          // fsync
        Assert.Equal(192, Offset<FuseLowLevelOps>("StatFs"));         // statfs (after opendir … fsyncdir)
        Assert.Equal(288, Offset<FuseLowLevelOps>("WriteBuf"));       // write_buf
        Assert.Equal(320, Offset<FuseLowLevelOps>("Fallocate"));      // fallocate
        Assert.Equal(336, Offset<FuseLowLevelOps>("CopyFileRange"));  // copy_file_range
        Assert.Equal(344, Offset<FuseLowLevelOps>("Lseek"));          // lseek, the last slot
    }

    [Fact]
    public void SmallStructsHaveTheHeaderSizes()
    {
        Assert.Equal(144, Marshal.SizeOf<Stat>());          // struct stat
        Assert.Equal(112, Marshal.SizeOf<StatVfs>());       // struct statvfs
        Assert.Equal(40, Marshal.SizeOf<FuseFileInfo>());   // struct fuse_file_info
        Assert.Equal(24, Marshal.SizeOf<FuseArgs>());       // struct fuse_args
        Assert.Equal(128, Marshal.SizeOf<FuseConnInfo>());  // struct fuse_conn_info
        Assert.Equal(40, Marshal.SizeOf<FuseBuf>());        // struct fuse_buf
        Assert.Equal(8, Offset<FuseArgs>("Argv"));          // fuse_args.argv
        Assert.Equal(16, Offset<FuseArgs>("Allocated"));    // fuse_args.allocated
        Assert.Equal(16, Offset<FuseBuf>("Mem"));           // fuse_buf.mem (after size, flags)
        Assert.Equal(24, Offset<FuseBuf>("Fd"));            // fuse_buf.fd
        Assert.Equal(32, Offset<FuseBuf>("Pos"));           // fuse_buf.pos
        Assert.Equal(72, Offset<StatVfs>("Flags"));         // statvfs.f_flag
        Assert.Equal(80, Offset<StatVfs>("NameMax"));       // statvfs.f_namemax
    }

    private static readonly byte[] s_stat = Hex(
        "0807060504030201",                                   // @0   st_dev = 0x0102030405060708
        "0100000000000000",                                   // @8   st_ino = 1
        "0100000000000000",                                   // @16  st_nlink = 1
        "80810000",                                           // @24  st_mode = 0100600
        "E8030000",                                           // @28  st_uid = 1000
        "64000000",                                           // @32  st_gid = 100
        "00000000",                                           // @36  padding
        "0000000000000000",                                   // @40  st_rdev
        "0000004000000000",                                   // @48  st_size = 1 GiB
        "0002000000000000",                                   // @56  st_blksize = 512
        "0008000000000000",                                   // @64  st_blocks = 2048
        "0000005F00000000", "0000000000000000",               // @72  st_atim = {0x5F000000, 0}
        "0100005F00000000", "0700000000000000",               // @88  st_mtim = {0x5F000001, 7}
        "0200005F00000000", "0000000000000000",               // @104 st_ctim = {0x5F000002, 0}
        "000000000000000000000000000000000000000000000000");  // @120 reserved[3]

    [Fact]
    public void StatReadsAndWritesTheCFixture()
    {
        var st = MemoryMarshal.Read<Stat>(s_stat);
        Assert.Equal(0x0102030405060708UL, st.Dev);
        Assert.Equal(1UL, st.Ino);
        Assert.Equal(1UL, st.NLink);
        Assert.Equal(0x8180u, st.Mode);
        Assert.True(st.IsRegularFile);
        Assert.Equal(1000u, st.Uid);
        Assert.Equal(100u, st.Gid);
        Assert.Equal(1L << 30, st.Size);
        Assert.Equal(512, st.BlkSize);
        Assert.Equal(2048, st.Blocks);
        Assert.Equal(0x5F000000, st.ATimeSec);
        Assert.Equal(0x5F000001, st.MTimeSec);
        Assert.Equal(7, st.MTimeNsec);
        Assert.Equal(0x5F000002, st.CTimeSec);

        var bytes = new byte[Marshal.SizeOf<Stat>()];
        MemoryMarshal.Write(bytes, in st);
        Assert.Equal(s_stat, bytes);
    }

    private static readonly byte[] s_fileInfo = Hex(
        "02000000",          // @0  flags = O_RDWR
        "92000000",          // @4  bit-fields: direct_io (bit 1) | nonseekable (bit 4) | noflush (bit 7)
        "0000000000000000",  // @8  padding2 and alignment
        "8877665544332211",  // @16 fh
        "9900000000000000",  // @24 lock_owner
        "41000000",          // @32 poll_events
        "00000000");         // @36 tail padding

    [Fact]
    public void FileInfoBitFieldsMatchTheCFixture()
    {
        var fi = MemoryMarshal.Read<FuseFileInfo>(s_fileInfo);
        Assert.Equal(2, fi.Flags);
        Assert.True(fi.DirectIo);
        Assert.False(fi.KeepCache);
        Assert.Equal(FuseFileInfo.NonSeekableBit, fi.Bits & FuseFileInfo.NonSeekableBit);
        Assert.Equal(FuseFileInfo.NoFlushBit, fi.Bits & FuseFileInfo.NoFlushBit);
        Assert.Equal(0x1122334455667788UL, fi.Fh);
        Assert.Equal(0x99UL, fi.LockOwner);
        Assert.Equal(0x41u, fi.PollEvents);

        fi.DirectIo = false;
        fi.KeepCache = true;
        Assert.Equal(0x94u, fi.Bits); // keep_cache is bit 2; the other bits are untouched
    }

    private static readonly byte[] s_connInfo = Hex(
        "07000000",  // @0  proto_major = 7
        "26000000",  // @4  proto_minor = 38
        "00000200",  // @8  max_write = 128 KiB
        "00001000",  // @12 max_read = 1 MiB
        "00000200",  // @16 max_readahead = 128 KiB
        "FF1F0000",  // @20 capable
        "01100000",  // @24 want = ASYNC_READ | AUTO_INVAL_DATA
        "0C000000",  // @28 max_background = 12
        "09000000",  // @32 congestion_threshold = 9
        "01000000",  // @36 time_gran = 1
        new string('0', 22 * 4 * 2)); // @40 reserved[22]

    [Fact]
    public void ConnInfoMatchesTheCFixture()
    {
        var ci = MemoryMarshal.Read<FuseConnInfo>(s_connInfo);
        Assert.Equal(7u, ci.ProtoMajor);
        Assert.Equal(38u, ci.ProtoMinor);
        Assert.Equal(128u * 1024, ci.MaxWrite);
        Assert.Equal(1024u * 1024, ci.MaxRead);
        Assert.Equal(128u * 1024, ci.MaxReadahead);
        Assert.Equal(0x1FFFu, ci.Capable);
        Assert.Equal(0x1001u, ci.Want);
        Assert.Equal(12u, ci.MaxBackground);
        Assert.Equal(9u, ci.CongestionThreshold);
        Assert.Equal(1u, ci.TimeGranularity);
    }

    [Fact]
    public unsafe void LibcStatFillsTheStructForARealFile()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(path, new byte[12345]);
            Stat st;
            Assert.Equal(0, Libc.StatPath(path, &st));
            Assert.True(st.IsRegularFile);
            Assert.Equal(12345, st.Size);
            Assert.Equal(1UL, st.NLink);
            Assert.Equal(new DateTimeOffset(File.GetLastWriteTimeUtc(path)).ToUnixTimeSeconds(), st.MTimeSec);

            Assert.Equal(0, Libc.StatPath(Path.GetTempPath(), &st));
            Assert.False(st.IsRegularFile);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static int Offset<T>(string field) => (int)Marshal.OffsetOf<T>(field);
}
