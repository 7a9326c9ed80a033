namespace ExportServer.Nbd.Server;

/// <summary>
/// Matches LIST/SET_META_CONTEXT queries against the contexts of an export. A full name selects that
/// context; a namespace prefix ending in ':' ("base:", "qemu:") lists every context under it, but selects
/// nothing for SET (as QEMU does); no query at all lists every context.
/// </summary>
internal static class NbdMetaContextQuery
{
    /// <summary>Matching contexts as (index in <paramref name="available"/>, context), each once, in query order.</summary>
    public static List<(int Id, NbdMetaContext Context)> Match(IReadOnlyList<NbdMetaContext> available, IReadOnlyList<string> queries, bool list)
    {
        var result = new List<(int, NbdMetaContext)>();
        if (queries.Count == 0 && list)
        {
            for (var i = 0; i < available.Count; i++)
            {
                result.Add((i, available[i]));
            }

            return result;
        }

        foreach (var q in queries)
        {
            var prefix = q.EndsWith(':');
            if (prefix && !list)
            {
                continue;
            }

            for (var i = 0; i < available.Count; i++)
            {
                var name = available[i].Name;
                var hit = prefix ? name.StartsWith(q, StringComparison.Ordinal) : name == q;
                if (hit && !result.Exists(r => r.Item1 == i))
                {
                    result.Add((i, available[i]));
                }
            }
        }

        return result;
    }
}
