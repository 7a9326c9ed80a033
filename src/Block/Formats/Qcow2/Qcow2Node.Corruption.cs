using System.Text.Json.Nodes;
using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>
/// Corruption found at run time, handled as QEMU's qcow2_signal_corruption: the message on stderr,
/// the BLOCK_IMAGE_CORRUPTED event, and EIO to the request. On a writable image it is fatal: the
/// corrupt bit is set in the header and writes are refused from then on; on a read-only image only
/// the request fails. Later events are suppressed (a fatal one still follows non-fatal ones).
/// </summary>
public sealed partial class Qcow2Node
{
    private bool _signalledCorruption;

    /// <summary>Where BLOCK_IMAGE_CORRUPTED goes: the graph the node was opened in, when it has one.</summary>
    internal BlockGraph? Events { get; set; }

    /// <summary>Signals the corruption <paramref name="message"/> describes and returns the EIO to throw.</summary>
    private async ValueTask<BlockException> SignalCorruptionAsync(string message, bool fatal = true, long offset = -1, long size = -1)
    {
        fatal = fatal && !IsReadOnly;
        var text = fatal
            ? $"qcow2: Marking image as corrupt: {message}; further corruption events will be suppressed"
            : $"qcow2: Image is corrupt: {message}; further non-fatal corruption events will be suppressed";
        if (_signalledCorruption && (!fatal || _corruptReason is not null))
        {
            return BlockException.Io(text);
        }

        _signalledCorruption = true;
        await Console.Error.WriteLineAsync(text).ConfigureAwait(false);
        var data = new JsonObject { ["device"] = string.Empty, ["node-name"] = NodeName, ["msg"] = message };
        if (offset >= 0)
        {
            data["offset"] = offset;
        }

        if (size >= 0)
        {
            data["size"] = size;
        }

        data["fatal"] = fatal;
        Events?.Emit("BLOCK_IMAGE_CORRUPTED", data);
        if (fatal)
        {
            _corruptReason = message;
            _header.IncompatibleFeatures |= Qcow2Format.IncompatCorrupt;
            try
            {
                await WriteIncompatibleFeaturesAsync().ConfigureAwait(false);
            }
            catch (BlockException)
            {
                // The image stays refused in memory; the caller still gets EIO.
            }
        }

        return BlockException.Io(text);
    }

    /// <summary>A number as C's "%#x" prints it in QEMU's messages: "0" for zero, else with "0x".</summary>
    private static string Hex(long value) => value == 0 ? "0" : $"0x{value:x}";

    /// <summary>An inconsistency found while writing: always fatal.</summary>
    private ValueTask<BlockException> MarkCorruptAsync(string reason) => SignalCorruptionAsync(reason);

    private void CheckNotCorrupt()
    {
        if (_corruptReason is not null)
        {
            throw BlockException.Io($"qcow2: image '{FileName}' is marked corrupt ({_corruptReason}); writes are refused");
        }
    }
}
