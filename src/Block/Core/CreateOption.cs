namespace ExportServer.Block.Core;

/// <summary>One of qemu-img's create options: its name, type and the default the "Formatting …" line shows (null: shown only when given).</summary>
public sealed record CreateOption(string Name, CreateOptionType Type, string? Default = null)
{
    /// <summary>qemu-img's names of the options every format shares (QEMU's BLOCK_OPT_*).</summary>
    public const string Size = "size";
    public const string BackingFile = "backing_file";
    public const string BackingFormat = "backing_fmt";
    public const string Preallocation = "preallocation";
}
