namespace ExportServer.Block.Transactions;

/// <summary>The bitmap commands that change one bitmap in place.</summary>
public enum BitmapChange
{
    Clear,
    Enable,
    Disable,
}
