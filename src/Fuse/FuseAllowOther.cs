namespace ExportServer.Fuse;

/// <summary>QAPI FuseExportAllowOther: whether other users may access the mounted file.</summary>
public enum FuseAllowOther
{
    /// <summary>Try allow_other, mount without it if that fails (QEMU's default).</summary>
    Auto,
    On,
    Off,
}
