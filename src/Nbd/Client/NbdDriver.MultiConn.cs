using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;
using ExportServer.Nbd.Protocol;

namespace ExportServer.Nbd.Client;

/// <summary>
/// multi-conn=N: the node opens N connections to the export and spreads its requests over them, when
/// the server advertises NBD_FLAG_CAN_MULTI_CONN (its caches are shared by all connections, so a flush
/// or FUA on one covers writes made on the others). Without the option the node opens
/// <see cref="DefaultMultiConn"/> connections to such a server and one to any other. An explicit N
/// above 1 is refused when the server does not advertise the flag, or when it does not accept every
/// connection: the option is a demand, and spreading writes over connections a server does not keep
/// consistent could lose them.
/// </summary>
public sealed partial class NbdDriver
{
    /// <summary>
    /// Connections opened when multi-conn is not given and the server allows several. Measured by
    /// mirroring a 1 GiB qcow2 to READY into a raw export on 127.0.0.1 (three rounds, medians, on a
    /// shared two-core machine): into qemu-nbd -e 8, 18.4 s with one connection, 15.9 s with two, 14.1 s
    /// with four; into our own daemon (7.2, 6.9, 7.2 s) and qemu-storage-daemon (16.9, 16.9, 18.1 s) the
    /// count made no difference beyond noise. Four helps where the server gains from parallel
    /// connections and costs nothing measurable elsewhere.
    /// </summary>
    public const int DefaultMultiConn = 4;

    /// <summary>The most connections one node opens.</summary>
    public const int MaxMultiConn = 16;

    private const string MultiConnKey = "multi-conn";

    private static int? ReadMultiConn(OptionReader options)
    {
        var n = options.GetInt(MultiConnKey);
        return n is null or (>= 1 and <= MaxMultiConn)
            ? (int?)n
            : throw BlockException.Invalid($"Parameter '{options.FullName(MultiConnKey)}' expects a value between 1 and {MaxMultiConn}");
    }

    /// <summary>
    /// <paramref name="first"/> and the further connections multi-conn asks for, all open or none (the
    /// first is closed too when an explicit request cannot be met). Without an explicit request, those
    /// that opened are used and a failure only leaves fewer.
    /// </summary>
    private async Task<NbdClient[]> ConnectMoreAsync(string nodeName, NbdServerAddress address, string export, NbdClient first, int? requested, string option)
    {
        var info = first.Info;
        var canMultiConn = info.Has(NbdConstants.FlagCanMultiConn);
        if (requested > 1 && !canMultiConn)
        {
            await first.DisposeAsync().ConfigureAwait(false);
            throw BlockException.Invalid(
                $"Parameter '{option}': the NBD server does not allow more than one connection to export '{export}' (no NBD_FLAG_CAN_MULTI_CONN)");
        }

        var count = requested ?? (canMultiConn ? DefaultMultiConn : 1);
        if (count == 1)
        {
            return [first];
        }

        var attempts = Enumerable.Range(1, count - 1)
            .Select(_ => NbdNode.ConnectAsync(address, export, TimeSpan.Zero, CancellationToken.None))
            .ToArray();
        List<NbdClient> clients = [first];
        BlockException? failure = null;
        foreach (var attempt in attempts)
        {
            try
            {
                var client = await attempt.ConfigureAwait(false);
                clients.Add(client);
                if (client.Info.Size != info.Size || !client.Info.Has(NbdConstants.FlagCanMultiConn))
                {
                    failure ??= BlockException.Io($"export '{export}' changed between connections");
                }
            }
            catch (BlockException e)
            {
                failure ??= e;
            }
        }

        if (failure is null)
        {
            return [.. clients];
        }

        if (requested is null)
        {
            var usable = clients.Where(c => c == first || (c.Info.Size == info.Size && c.Info.Has(NbdConstants.FlagCanMultiConn))).ToArray();
            NbdClientLog.FewerConnections(_log, nodeName, usable.Length, count, failure.Message);
            foreach (var extra in clients.Except(usable))
            {
                await extra.DisposeAsync().ConfigureAwait(false);
            }

            return usable;
        }

        foreach (var client in clients)
        {
            await client.DisposeAsync().ConfigureAwait(false);
        }

        throw new BlockException(failure.Errno, $"Parameter '{option}': {count - 1} more connections to export '{export}' asked for, not all opened: {failure.Message}", failure);
    }
}
