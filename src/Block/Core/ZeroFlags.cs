namespace ExportServer.Block.Core;

[Flags]
public enum ZeroFlags
{
    None = 0,

    /// <summary>The range may be deallocated (punched) as long as it reads back as zeroes.</summary>
    MayUnmap = 1,

    /// <summary>Fail with ENOTSUP instead of falling back to writing zero buffers (NBD FAST_ZERO).</summary>
    NoFallback = 2,

    /// <summary>Force unit access.</summary>
    Fua = 4,
}
