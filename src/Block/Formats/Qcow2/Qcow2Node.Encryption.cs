using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Qcow2;

/// <summary>The encrypted image as queries show it, and key slot changes through x-blockdev-amend (QEMU's qcow2_co_amend).</summary>
public sealed partial class Qcow2Node : IAmendableNode
{
    public bool Encrypted => _crypto is not null;

    /// <summary>QAPI BlockdevAmendOptionsQcow2: only the LUKS key slots of an encrypted image (encrypt.*) can change.</summary>
    public async ValueTask AmendAsync(OptionReader options, NamedObjects objects, bool force)
    {
        var encrypt = options.GetObject("encrypt");
        options.EnsureAllConsumed();
        if (encrypt is null)
        {
            return;
        }

        if (_crypto is null)
        {
            throw BlockException.NotSupported("image is not encrypted, can't amend");
        }

        var format = encrypt.RequireString("format");
        if (format is not ("luks" or "qcow"))
        {
            throw BlockException.Invalid($"Parameter '{encrypt.FullName("format")}' does not accept value '{format}'");
        }

        if (format != "luks")
        {
            throw BlockException.NotSupported("Amend can't be used to change the qcow2 encryption format");
        }

        if (_crypto.Luks is not { } luks)
        {
            throw BlockException.NotSupported("Only LUKS encryption options can be amended for qcow2 with blockdev-amend");
        }

        if (IsReadOnly)
        {
            throw new BlockException(Errno.EPERM, $"Node '{NodeName}' is read only");
        }

        await luks.AmendAsync(encrypt, objects, force).ConfigureAwait(false);
    }
}
