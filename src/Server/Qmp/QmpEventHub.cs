using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.Server.Qmp.Types;

namespace ExportServer.Server.Qmp;

/// <summary>Broadcasts events to every monitor session that has finished capabilities negotiation.</summary>
internal sealed class QmpEventHub
{
    private readonly List<QmpSession> _sessions = new();

    public void Attach(QmpSession session)
    {
        lock (_sessions)
        {
            _sessions.Add(session);
        }
    }

    public void Detach(QmpSession session)
    {
        lock (_sessions)
        {
            _sessions.Remove(session);
        }
    }

    /// <summary>Timestamps the event now and queues it to each negotiated session, in emission order.</summary>
    public void Emit(string name, JsonObject? data)
    {
        var message = new QmpEventMessage(name, data, QmpTimestamp.Now());
        var line = QmpJson.Write(JsonSerializer.SerializeToNode(message, QmpJsonContext.Default.QmpEventMessage)!);
        QmpSession[] targets;
        lock (_sessions)
        {
            targets = _sessions.Where(s => s.Negotiated).ToArray();
        }

        foreach (var s in targets)
        {
            s.Send(line);
        }
    }
}
