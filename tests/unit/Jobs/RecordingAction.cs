using ExportServer.Block.Core;
using ExportServer.Block.Transactions;

namespace ExportServer.UnitTests.Jobs;

/// <summary>A transaction action that writes each step into a shared log ("prepare a"); its prepare fails when asked.</summary>
internal sealed class RecordingAction(string name, List<string> log, bool failPrepare = false) : ITransactionAction
{
    public ValueTask PrepareAsync()
    {
        log.Add("prepare " + name);
        return failPrepare ? throw BlockException.Invalid($"{name} failed") : ValueTask.CompletedTask;
    }

    public ValueTask CommitAsync() => Step("commit");

    public ValueTask AbortAsync() => Step("abort");

    public ValueTask CleanAsync() => Step("clean");

    private ValueTask Step(string step)
    {
        log.Add(step + " " + name);
        return ValueTask.CompletedTask;
    }
}
