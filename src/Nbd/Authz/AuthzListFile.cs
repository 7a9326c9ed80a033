using System.Text.Json;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Nbd.Authz;

/// <summary>
/// <c>authz-list-file</c>: an <c>authz-list</c> read from a JSON file (<c>{"rules": [...], "policy": ...}</c>)
/// and, with <c>refresh</c> (the default), read again whenever the file changes. A reload that fails
/// keeps the rules in force.
/// </summary>
public sealed class AuthzListFile : IAuthz, IDisposable
{
    private readonly AuthzList _list;
    private readonly FileSystemWatcher? _watcher;

    public AuthzListFile(string fileName, bool refresh)
    {
        FileName = fileName;
        var (rules, allow) = Load(fileName);
        _list = new AuthzList(rules, allow);
        if (refresh)
        {
            var full = Path.GetFullPath(fileName);
            _watcher = new FileSystemWatcher(Path.GetDirectoryName(full)!, Path.GetFileName(full))
            {
                NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.FileName | NotifyFilters.Size,
            };
            _watcher.Changed += (_, _) => Reload();
            _watcher.Created += (_, _) => Reload();
            _watcher.Renamed += (_, _) => Reload();
            _watcher.EnableRaisingEvents = true;
        }
    }

    public string FileName { get; }

    public bool IsAllowed(string identity) => _list.IsAllowed(identity);

    public void Dispose() => _watcher?.Dispose();

    private void Reload()
    {
        try
        {
            var (rules, allow) = Load(FileName);
            _list.Replace(rules, allow);
        }
        catch (BlockException)
        {
            // A file caught half-written or broken: the rules loaded before stay in force.
        }
    }

    private static (IReadOnlyList<AuthzRule> Rules, bool Allow) Load(string fileName)
    {
        string text;
        try
        {
            text = File.ReadAllText(fileName);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw BlockException.Invalid($"Unable to read '{fileName}': Failed to open file “{fileName}”: {BlockException.Reason(e)}");
        }

        JsonNode? root;
        try
        {
            root = JsonNode.Parse(text);
        }
        catch (JsonException)
        {
            throw BlockException.Invalid("JSON parse error, invalid keyword");
        }

        if (root is not JsonObject obj)
        {
            throw BlockException.Invalid("Invalid parameter type for 'obj', expected: dict");
        }

        var r = new OptionReader(obj);
        var list = AuthzObjectTypes.ReadList(r);
        r.EnsureAllConsumed();
        return list;
    }
}
