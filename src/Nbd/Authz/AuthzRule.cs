namespace ExportServer.Nbd.Authz;

/// <summary>One rule of an <c>authz-list</c>: an exact string or a shell glob, and the policy it selects.</summary>
public sealed record AuthzRule(string Match, bool Allow, bool Glob)
{
    public bool Matches(string identity) => Glob ? GlobMatch.IsMatch(Match, identity) : string.Equals(Match, identity, StringComparison.Ordinal);
}
