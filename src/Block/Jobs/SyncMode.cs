namespace ExportServer.Block.Jobs;

/// <summary>QAPI MirrorSyncMode, as mirror and backup use it (bitmap and incremental are not offered).</summary>
public enum SyncMode
{
    /// <summary>The whole content, through the backing chain.</summary>
    Full,

    /// <summary>Only what the top layer holds; the target is expected to have the same backing.</summary>
    Top,

    /// <summary>Nothing initially: only what is written during the job (mirror), or copied before it is overwritten (backup).</summary>
    None,
}
