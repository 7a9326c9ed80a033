namespace ExportServer.Block.Core;

/// <summary>The types of qemu-img's create options (QEMU's QemuOptType).</summary>
public enum CreateOptionType
{
    String,
    Bool,
    Number,
    Size,
}
