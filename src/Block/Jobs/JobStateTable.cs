namespace ExportServer.Block.Jobs;

/// <summary>
/// The job lifecycle as data, QEMU's JobSTT and JobVerbTable: which status may follow which, and
/// which verb each status accepts. Columns in both tables are JobStatus order:
/// Undefined, Created, Running, Paused, Ready, Standby, Waiting, Pending, Aborting, Concluded, Null.
/// </summary>
public static class JobStateTable
{
    private static readonly bool[,] Transitions = Table(
        "01000000000",  // Undefined -> Created
        "00100000101",  // Created   -> Running, Aborting, Null
        "00011010100",  // Running   -> Paused, Ready, Waiting, Aborting
        "00100000000",  // Paused    -> Running
        "00000110100",  // Ready     -> Standby, Waiting, Aborting
        "00001000000",  // Standby   -> Ready
        "00000001100",  // Waiting   -> Pending, Aborting
        "00000000110",  // Pending   -> Aborting, Concluded
        "00000000110",  // Aborting  -> Aborting, Concluded
        "00000000001",  // Concluded -> Null
        "00000000000"); // Null

    private static readonly bool[,] Verbs = Table(
        "01111111000",  // Cancel
        "01111100000",  // Pause
        "01111100000",  // Resume
        "01111100000",  // SetSpeed
        "00001000000",  // Complete
        "00000001000",  // Finalize
        "00000000010"); // Dismiss

    public static bool CanTransition(JobStatus from, JobStatus to) => Transitions[(int)from, (int)to];

    public static bool Accepts(JobStatus status, JobVerb verb) => Verbs[(int)verb, (int)status];

    /// <summary>QAPI's lower-case, hyphenated names.</summary>
    public static string Name(JobStatus status) => status.ToString().ToLowerInvariant();

    public static string Name(JobVerb verb) => verb == JobVerb.SetSpeed ? "set-speed" : verb.ToString().ToLowerInvariant();

    private static bool[,] Table(params string[] rows)
    {
        var t = new bool[rows.Length, rows[0].Length];
        for (var r = 0; r < rows.Length; r++)
        {
            for (var c = 0; c < rows[r].Length; c++)
            {
                t[r, c] = rows[r][c] == '1';
            }
        }

        return t;
    }
}
