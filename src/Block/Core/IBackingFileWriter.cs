namespace ExportServer.Block.Core;

/// <summary>Opt-in for formats that record a backing file name in their metadata (change-backing-file).</summary>
public interface IBackingFileWriter
{
    /// <summary>Rewrites the backing file name and format recorded in the image; nulls remove them.</summary>
    ValueTask WriteBackingFileAsync(string? backingFile, string? backingFormat);
}
