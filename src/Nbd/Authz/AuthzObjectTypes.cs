using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Nbd.Authz;

/// <summary>The three authorization object kinds and their QAPI properties.</summary>
public static class AuthzObjectTypes
{
    private static readonly Dictionary<string, bool> Policies = new(StringComparer.Ordinal) { ["allow"] = true, ["deny"] = false };
    private static readonly Dictionary<string, bool> Formats = new(StringComparer.Ordinal) { ["glob"] = true, ["exact"] = false };

    public static IObjectType[] All { get; } =
    [
        new ObjectType("authz-simple", (id, r) => new AuthzSimple(r.RequireString("identity"))),
        new ObjectType("authz-list", (id, r) =>
        {
            var (rules, allow) = ReadList(r);
            return new AuthzList(rules, allow);
        }),
        new ObjectType("authz-list-file", (id, r) =>
        {
            var file = r.GetString("filename");
            var refresh = r.GetBool("refresh", true);
            r.EnsureAllConsumed();
            return new AuthzListFile(file ?? throw BlockException.Invalid("filename not provided"), refresh);
        }),
    ];

    /// <summary>
    /// Whether the authorization object <paramref name="id"/> allows <paramref name="identity"/>; a
    /// missing object or one of another kind denies, with QEMU's reason in <paramref name="reason"/>.
    /// </summary>
    public static bool IsAllowed(NamedObjects objects, string id, string identity, out string reason)
    {
        if (!objects.Contains(id))
        {
            reason = $"Cannot find QAuthZ object '{id}'";
            return false;
        }

        if (objects.TryGet<IAuthz>(id) is not { } authz)
        {
            reason = $"Object '{id}' is not a QAuthZ subclass";
            return false;
        }

        reason = $"TLS x509 authz check for {identity} is denied";
        return authz.IsAllowed(identity);
    }

    /// <summary>authz-list's 'rules' and 'policy' (default deny), also the content of an authz-list-file.</summary>
    internal static (IReadOnlyList<AuthzRule> Rules, bool Allow) ReadList(OptionReader r)
    {
        var allow = r.GetEnum("policy", Policies) ?? false;
        var rules = new List<AuthzRule>();
        switch (r.Raw("rules"))
        {
            case null:
                break;
            case JsonArray array:
                for (var i = 0; i < array.Count; i++)
                {
                    if (array[i] is not JsonObject o)
                    {
                        throw BlockException.Invalid($"Invalid parameter type for 'rules[{i}]', expected: object");
                    }

                    var rule = new OptionReader(o, $"rules.{i}.");
                    var match = rule.RequireString("match");
                    var policy = rule.GetEnum("policy", Policies) ?? throw BlockException.Invalid($"Parameter 'rules.{i}.policy' is missing");
                    var glob = rule.GetEnum("format", Formats) ?? false;
                    rule.EnsureAllConsumed();
                    rules.Add(new AuthzRule(match, policy, glob));
                }

                break;
            default:
                throw BlockException.Invalid("Invalid parameter type for 'rules', expected: array");
        }

        return (rules, allow);
    }

    private sealed class ObjectType(string qomType, Func<string, OptionReader, IAuthz> create) : IObjectType
    {
        public string QomType => qomType;

        public void Add(NamedObjects objects, string id, OptionReader options)
        {
            var authz = create(id, options);
            try
            {
                options.EnsureAllConsumed();
                objects.Add(id, authz);
            }
            catch
            {
                (authz as IDisposable)?.Dispose();
                throw;
            }
        }

        public bool TryDelete(NamedObjects objects, string id)
        {
            if (objects.TryGet<IAuthz>(id) is not { } authz || authz.GetType() != TypeOf(qomType))
            {
                return false;
            }

            objects.Remove(id);
            (authz as IDisposable)?.Dispose();
            return true;
        }

        private static Type TypeOf(string qomType) => qomType switch
        {
            "authz-simple" => typeof(AuthzSimple),
            "authz-list" => typeof(AuthzList),
            _ => typeof(AuthzListFile),
        };
    }
}
