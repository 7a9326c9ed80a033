namespace ExportServer.Nbd.Authz;

/// <summary><c>authz-list</c>: the first rule that matches decides; without one, the default policy does.</summary>
public sealed class AuthzList(IReadOnlyList<AuthzRule> rules, bool allowByDefault) : IAuthz
{
    private volatile Rules _rules = new(rules, allowByDefault);

    public bool IsAllowed(string identity)
    {
        var current = _rules;
        foreach (var rule in current.List)
        {
            if (rule.Matches(identity))
            {
                return rule.Allow;
            }
        }

        return current.AllowByDefault;
    }

    /// <summary>Replaces every rule and the default at once (authz-list-file's reload).</summary>
    internal void Replace(IReadOnlyList<AuthzRule> rules, bool allowByDefault) => _rules = new(rules, allowByDefault);

    private sealed record Rules(IReadOnlyList<AuthzRule> List, bool AllowByDefault);
}
