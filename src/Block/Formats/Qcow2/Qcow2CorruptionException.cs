namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// Metadata found inconsistent by a synchronous lookup (an unaligned offset, an invalid entry), with
/// QEMU's description. The node's async entry points turn it into a signalled corruption and EIO
/// (<c>Qcow2Node.SignalCorruptionAsync</c>); it never leaves the node.
/// </summary>
internal sealed class Qcow2CorruptionException(string message) : Exception(message);
