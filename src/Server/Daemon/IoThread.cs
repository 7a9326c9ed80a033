using System.Collections.Concurrent;

namespace ExportServer.Server.Daemon;

/// <summary>
/// QEMU's iothread object: a dedicated thread on which the requests of the exports bound to it
/// run. It blocks (never spins) while idle. An exception in a request stays in that request's
/// task; it never ends the thread or the daemon.
/// </summary>
internal sealed class IoThread : TaskScheduler, IDisposable
{
    private readonly BlockingCollection<Task> _queue = new();
    private readonly Thread _thread;

    public IoThread(string id)
    {
        Name = id;
        _thread = new Thread(Run) { IsBackground = true, Name = "iothread " + id };
        _thread.Start();
    }

    public string Name { get; }

    public override int MaximumConcurrencyLevel => 1;

    protected override void QueueTask(Task task) => _queue.Add(task);

    protected override bool TryExecuteTaskInline(Task task, bool taskWasPreviouslyQueued) =>
        Thread.CurrentThread == _thread && TryExecuteTask(task);

    protected override IEnumerable<Task> GetScheduledTasks() => _queue.ToArray();

    private void Run()
    {
        foreach (var task in _queue.GetConsumingEnumerable())
        {
            TryExecuteTask(task);
        }
    }

    public void Dispose()
    {
        _queue.CompleteAdding();
        if (Thread.CurrentThread != _thread)
        {
            _thread.Join(TimeSpan.FromSeconds(5));
        }
    }
}
