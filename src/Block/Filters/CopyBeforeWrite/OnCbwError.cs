namespace ExportServer.Block.Filters.CopyBeforeWrite;

/// <summary>QAPI OnCbwError: what a failed (or timed-out) copy before a write does.</summary>
public enum OnCbwError
{
    /// <summary>The guest's write fails and the old data stays in place (the default).</summary>
    BreakGuestWrite,

    /// <summary>The guest's write goes on and the point-in-time view is lost: every later snapshot request fails.</summary>
    BreakSnapshot,
}
