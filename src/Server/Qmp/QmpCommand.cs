using System.Text.Json.Nodes;

namespace ExportServer.Server.Qmp;

/// <summary>
/// A command of the table: its QAPI name, its arguments and its handler. <paramref name="Boxed"/>
/// commands (blockdev-add, object-add, …) take a union whose members depend on a discriminator;
/// the dispatcher checks only the listed members and the handler checks the rest. The handler
/// returns the "return" value; null means an empty object.
/// </summary>
internal sealed record QmpCommand(
    string Name,
    IReadOnlyList<QmpArg> Args,
    Func<QmpCall, ValueTask<JsonNode?>> Handler,
    string ReturnType = "any",
    bool Boxed = false)
{
    /// <summary>Other names the command answers to (x-blockdev-del).</summary>
    public IReadOnlyList<string> Aliases { get; init; } = [];
}
