namespace ExportServer.Block.Core;

/// <summary>An internal snapshot as QMP's SnapshotInfo shows it.</summary>
public sealed record InternalSnapshotInfo(string Id, string Name, long VmStateSize, long DateSeconds, long DateNanoseconds, long VmClockNanoseconds, long IcountOrMinusOne = -1);
