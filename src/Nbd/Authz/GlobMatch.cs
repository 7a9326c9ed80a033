namespace ExportServer.Nbd.Authz;

/// <summary>
/// fnmatch(3) without flags, as QEMU's authz-list uses it: <c>*</c> any run, <c>?</c> one character,
/// <c>[...]</c> a set (<c>!</c> or <c>^</c> negates, ranges with <c>-</c>), <c>\</c> quotes the next one.
/// </summary>
internal static class GlobMatch
{
    public static bool IsMatch(ReadOnlySpan<char> pattern, ReadOnlySpan<char> text)
    {
        // Iterative with one backtrack point for the last '*': linear for the patterns people write.
        int p = 0, t = 0, starP = -1, starT = 0;
        while (t < text.Length)
        {
            if (p < pattern.Length && pattern[p] == '*')
            {
                starP = ++p;
                starT = t;
                continue;
            }

            if (p < pattern.Length && MatchOne(pattern, ref p, text[t], out var next))
            {
                p = next;
                t++;
                continue;
            }

            if (starP < 0)
            {
                return false;
            }

            p = starP;
            t = ++starT;
        }

        while (p < pattern.Length && pattern[p] == '*')
        {
            p++;
        }

        return p == pattern.Length;
    }

    /// <summary>Whether the pattern element at <paramref name="p"/> matches <paramref name="c"/>; <paramref name="next"/> is the index after it.</summary>
    private static bool MatchOne(ReadOnlySpan<char> pattern, ref int p, char c, out int next)
    {
        var ch = pattern[p];
        if (ch == '?')
        {
            next = p + 1;
            return true;
        }

        if (ch == '\\' && p + 1 < pattern.Length)
        {
            next = p + 2;
            return pattern[p + 1] == c;
        }

        if (ch == '[' && TryMatchSet(pattern, p, c, out next, out var matched))
        {
            return matched;
        }

        next = p + 1;
        return ch == c;
    }

    /// <summary>A bracket expression at <paramref name="start"/>; false when it is not closed (then '[' is literal).</summary>
    private static bool TryMatchSet(ReadOnlySpan<char> pattern, int start, char c, out int next, out bool matched)
    {
        var i = start + 1;
        var negate = i < pattern.Length && pattern[i] is '!' or '^';
        if (negate)
        {
            i++;
        }

        var found = false;
        var first = true;
        while (i < pattern.Length && (first || pattern[i] != ']'))
        {
            first = false;
            var lo = pattern[i];
            if (i + 2 < pattern.Length && pattern[i + 1] == '-' && pattern[i + 2] != ']')
            {
                found |= c >= lo && c <= pattern[i + 2];
                i += 3;
            }
            else
            {
                found |= c == lo;
                i++;
            }
        }

        if (i >= pattern.Length)
        {
            next = start + 1;
            matched = false;
            return false;
        }

        next = i + 1;
        matched = found != negate;
        return true;
    }
}
