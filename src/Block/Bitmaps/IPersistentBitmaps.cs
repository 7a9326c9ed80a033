namespace ExportServer.Block.Bitmaps;

/// <summary>
/// A node whose image stores named dirty bitmaps (qcow2's bitmaps extension). The node loads the
/// stored bitmaps when it opens and stores its persistent ones when it closes or becomes read-only.
/// </summary>
public interface IPersistentBitmaps
{
    /// <summary>Throws, with the image's reason, when a new bitmap <paramref name="name"/> could not be stored.</summary>
    void CheckCanStore(string name, long granularity);

    /// <summary>Removes the bitmap from the image now, if it is stored there.</summary>
    ValueTask RemoveStoredAsync(string name);
}
