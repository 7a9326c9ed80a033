namespace ExportServer.Block.Core;

[Flags]
public enum WriteFlags
{
    None = 0,

    /// <summary>Force unit access: the data is on stable storage when the write completes.</summary>
    Fua = 1,
}
