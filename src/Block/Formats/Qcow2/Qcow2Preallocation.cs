namespace ExportServer.Block.Formats.Qcow2;

/// <summary>QEMU's preallocation modes for image creation.</summary>
public enum Qcow2Preallocation
{
    /// <summary>Nothing beyond the header and empty tables.</summary>
    Off,

    /// <summary>Every L2 table and data cluster allocated and mapped; the file is sparse.</summary>
    Metadata,

    /// <summary>As metadata, with the file's space reserved.</summary>
    Falloc,

    /// <summary>As metadata, with zeroes written to every data cluster.</summary>
    Full,
}
