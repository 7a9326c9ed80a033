using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Server.Qmp.Types;
using Microsoft.Extensions.Logging;

namespace ExportServer.Server.Qmp;

/// <summary>
/// Turns one request into one reply: checks the request object as QEMU's monitor does, enforces
/// capabilities negotiation, finds the command (or an alias), checks its arguments and runs it.
/// Commands run one at a time, whichever monitor sent them, as under QEMU's big lock.
/// </summary>
internal sealed class QmpDispatcher
{
    private readonly Dictionary<string, QmpCommand> _byName = new(StringComparer.Ordinal);
    private readonly List<QmpCommand> _commands = new();
    private readonly SemaphoreSlim _bigLock = new(1, 1);
    private readonly ILogger _log;

    public QmpDispatcher(ILogger log)
    {
        _log = log;
    }

    public const string CapabilitiesCommand = "qmp_capabilities";

    /// <summary>Commands in registration order (aliases not repeated).</summary>
    public IReadOnlyList<QmpCommand> Commands => _commands;

    public void Add(QmpCommand command)
    {
        foreach (var name in command.Aliases.Prepend(command.Name))
        {
            if (!_byName.TryAdd(name, command))
            {
                throw new InvalidOperationException($"command '{name}' registered twice");
            }
        }

        _commands.Add(command);
    }

    public bool TryGet(string name, out QmpCommand command) => _byName.TryGetValue(name, out command!);

    /// <summary>Answers one value read from a monitor; a JSON error gets an error reply without an id.</summary>
    public ValueTask<QmpReply> DispatchAsync(QmpInput input, QmpSession? session) =>
        input.Error is { } error
            ? ValueTask.FromResult(QmpReply.Fail(null, QmpErrorClass.GenericError, error))
            : DispatchAsync(input.Value, session);

    public async ValueTask<QmpReply> DispatchAsync(JsonNode? request, QmpSession? session)
    {
        if (request is not JsonObject obj)
        {
            return QmpReply.Fail(null, QmpErrorClass.GenericError, "QMP input must be a JSON object");
        }

        var id = obj["id"]?.DeepClone();
        string? name = null;
        var arguments = new JsonObject();
        foreach (var (key, value) in obj)
        {
            switch (key)
            {
                case "execute" or "exec-oob":
                    if (value?.GetValueKind() != JsonValueKind.String)
                    {
                        return QmpReply.Fail(id, QmpErrorClass.GenericError, $"QMP input member '{key}' must be a string");
                    }

                    name = value.GetValue<string>();
                    break;
                case "arguments":
                    if (value is not JsonObject args)
                    {
                        return QmpReply.Fail(id, QmpErrorClass.GenericError, "QMP input member 'arguments' must be an object");
                    }

                    arguments = (JsonObject)args.DeepClone();
                    break;
                case "id":
                    break;
                default:
                    return QmpReply.Fail(id, QmpErrorClass.GenericError, $"QMP input member '{key}' is unexpected");
            }
        }

        if (name is null)
        {
            return QmpReply.Fail(id, QmpErrorClass.GenericError, "QMP input lacks member 'execute'");
        }

        if (session is { Negotiated: false } && name != CapabilitiesCommand)
        {
            return QmpReply.Fail(id, QmpErrorClass.CommandNotFound, "Expecting capabilities negotiation with 'qmp_capabilities'");
        }

        if (session is { Negotiated: true } && name == CapabilitiesCommand)
        {
            return QmpReply.Fail(id, QmpErrorClass.CommandNotFound, "Capabilities negotiation is already complete, command ignored");
        }

        if (!_byName.TryGetValue(name, out var command))
        {
            return QmpReply.Fail(id, QmpErrorClass.CommandNotFound, $"The command {name} has not been found");
        }

        var call = new QmpCall(arguments, session);
        await _bigLock.WaitAsync().ConfigureAwait(false);
        try
        {
            QmpArguments.Check(arguments, command);
            var result = await command.Handler(call).ConfigureAwait(false);
            return new QmpReply(id, result ?? new JsonObject(), null, call.AfterReply);
        }
        catch (QmpException e)
        {
            return QmpReply.Fail(id, e.ErrorClass, e.Message);
        }
        catch (BlockException e)
        {
            return QmpReply.Fail(id, QmpErrorClass.GenericError, e.Message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return QmpReply.Fail(id, QmpErrorClass.GenericError, BlockException.Reason(e));
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException)
        {
            _log.LogWarning(e, "command {Command} failed", name);
            return QmpReply.Fail(id, QmpErrorClass.GenericError, e.Message);
        }
        catch (Exception e)
        {
            // A failure nobody anticipated ends with this command; the monitor and the daemon go on.
            _log.LogError(e, "command {Command} failed", name);
            return QmpReply.Fail(id, QmpErrorClass.GenericError, BlockException.Reason(e));
        }
        finally
        {
            _bigLock.Release();
        }
    }
}
