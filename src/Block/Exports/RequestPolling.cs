using System.Diagnostics;
using ExportServer.Block.Core;

namespace ExportServer.Block.Exports;

/// <summary>
/// How long a connection busy-polls for the next request before it sleeps, with the meaning of QEMU's
/// iothread properties poll-max-ns, poll-grow and poll-shrink. A client that sends its next request
/// soon after the last reply (one request at a time) then finds the server awake: neither side pays
/// for a wake-up.
/// </summary>
/// <param name="MaxNs">The longest poll, in nanoseconds; 0 turns polling off.</param>
/// <param name="Grow">Factor by which a too-short poll grows; 0 means 2.</param>
/// <param name="Shrink">Divisor by which a too-long poll shrinks; 0 means it drops to nothing.</param>
public sealed record RequestPolling(long MaxNs, long Grow, long Shrink)
{
    /// <summary>The environment variable that sets the main loop's poll-max-ns (0 turns polling off).</summary>
    public const string MaxNsVariable = "EXPORT_SERVER_POLL_MAX_NS";

    /// <summary>QEMU's default for iothreads.</summary>
    public static RequestPolling Default { get; } = new(32768, 0, 0);

    /// <summary>
    /// The main loop's default, 200 µs: on a virtual machine a client's turn-around (woken by the
    /// reply, sending its next request) took 40–60 µs, longer than QEMU's 32 µs, so polls up to that
    /// maximum never caught a request and the adaptive time fell back to nothing. With 200 µs, 4 KiB
    /// random reads and writes at queue depth 1 (fio's nbd engine) went from 14–16K to 27–31K IOPS
    /// (nbdkit on the same machine: 13–18K). The time still drops to nothing for a client slower than
    /// that, so an idle or slow connection costs no CPU.
    /// </summary>
    public static RequestPolling MainLoopDefault { get; } = new(200_000, 0, 0);

    /// <summary>No polling.</summary>
    public static RequestPolling Off { get; } = new(0, 0, 0);

    /// <summary>
    /// The main loop's polling: <see cref="MainLoopDefault"/> unless <see cref="MaxNsVariable"/> sets the
    /// maximum (for instance 0 on a host whose CPUs are all busy, where a poll only takes time from others).
    /// The daemon checks the variable at start (<see cref="FromEnvironment"/>) and refuses a bad value.
    /// </summary>
    public static RequestPolling MainLoop { get; private set; } = MainLoopDefault;

    /// <summary>Sets <see cref="MainLoop"/> from <see cref="MaxNsVariable"/>; a value that is not a whole number from 0 is refused.</summary>
    public static void FromEnvironment()
    {
        var value = Environment.GetEnvironmentVariable(MaxNsVariable);
        if (value is null)
        {
            return;
        }

        if (!long.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var ns))
        {
            throw BlockException.Invalid($"{MaxNsVariable} value must be in range [0, {long.MaxValue}], not '{value}'");
        }

        MainLoop = MainLoopDefault with { MaxNs = ns };
    }

    /// <summary>The first poll after polling was off, as QEMU starts.</summary>
    public const long InitialNs = 4000;
}

/// <summary>
/// The adaptive poll time of one connection. After each wait the time the wait took adjusts the next
/// poll: a wait the poll covered changes nothing, a wait longer than the maximum shrinks the poll
/// (polling would only burn the CPU), and a shorter one grows it toward the time the client takes.
/// </summary>
public struct AdaptivePoll
{
    public long Ns { get; private set; }

    public void Adjust(RequestPolling policy, long waitedNs)
    {
        if (waitedNs <= Ns)
        {
            return;
        }

        if (waitedNs > policy.MaxNs)
        {
            Ns = policy.Shrink > 0 ? Ns / policy.Shrink : 0;
        }
        else if (Ns < policy.MaxNs)
        {
            var grow = policy.Grow > 0 ? policy.Grow : 2;
            Ns = Math.Min(Ns == 0 ? RequestPolling.InitialNs : Ns * grow, policy.MaxNs);
        }
    }

    /// <summary>Nanoseconds between two <see cref="Stopwatch"/> timestamps.</summary>
    public static long ElapsedNs(long start, long end) => (long)((end - start) * (1e9 / Stopwatch.Frequency));
}
