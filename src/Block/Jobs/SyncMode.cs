namespace ExportServer.Block.Jobs;

/// <summary>QAPI MirrorSyncMode, as mirror and backup use it (incremental is bitmap with bitmap-mode on-success; mirror refuses both).</summary>
public enum SyncMode
{
    /// <summary>The whole content, through the backing chain.</summary>
    Full,

    /// <summary>Only what the top layer holds; the target is expected to have the same backing.</summary>
    Top,

    /// <summary>Nothing initially: only what is written during the job (mirror), or copied before it is overwritten (backup).</summary>
    None,

    /// <summary>Backup only: the ranges a dirty bitmap marks.</summary>
    Bitmap,
}
