namespace ExportServer.Block.Jobs.Backup;

/// <summary>QAPI BitmapSyncMode: what a backup leaves in its bitmap when it ends.</summary>
public enum BitmapSyncMode
{
    /// <summary>On success the bitmap holds only the writes made since the job started; else it is as before plus those writes.</summary>
    OnSuccess,

    /// <summary>The bitmap is left as before, plus the writes made since the job started.</summary>
    Never,

    /// <summary>As on success, even on failure, where what the job did not copy is marked as well.</summary>
    Always,
}
