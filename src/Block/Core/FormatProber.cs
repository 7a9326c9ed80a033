namespace ExportServer.Block.Core;

/// <summary>
/// Guesses an image's format the way QEMU's bdrv_find_format does: every probe scores the first bytes
/// and the highest score wins (the earliest registered on a tie). A name may belong to a format we
/// recognise but cannot open, so that the error names it.
/// </summary>
public sealed class FormatProber
{
    /// <summary>Bytes worth reading for <see cref="Probe"/>.</summary>
    public const int ProbeLength = 4096;

    private readonly List<IFormatProbe> _probes = new();
    private readonly List<IFormatProbe> _magicOnly = new();

    /// <summary>Adds a format driver's probe; it replaces an earlier probe of the same name.</summary>
    public void Add(IFormatProbe probe)
    {
        lock (_probes)
        {
            _probes.RemoveAll(p => p.Name == probe.Name);
            _probes.Add(probe);
        }
    }

    /// <summary>Adds the probe of a format that has no driver here; a driver's probe of that name takes precedence.</summary>
    public void AddMagicOnly(IFormatProbe probe)
    {
        lock (_probes)
        {
            _magicOnly.Add(probe);
        }
    }

    /// <summary>The name of the best-scoring format, or "raw" when nothing scores.</summary>
    public string Probe(ReadOnlySpan<byte> head, string? fileName = null)
    {
        IFormatProbe[] probes;
        lock (_probes)
        {
            probes = [.. _probes, .. _magicOnly.Where(m => !_probes.Exists(p => p.Name == m.Name))];
        }

        var best = "raw";
        var bestScore = 0;
        foreach (var probe in probes)
        {
            var score = probe.Probe(head, fileName);
            if (score > bestScore)
            {
                (best, bestScore) = (probe.Name, score);
            }
        }

        return best;
    }

    /// <summary>Reads the first bytes of <paramref name="node"/> and probes them (QEMU's find_image_format).</summary>
    public async ValueTask<string> ProbeAsync(BlockNode node)
    {
        var head = new byte[(int)Math.Min(node.Length, ProbeLength)];
        if (head.Length > 0)
        {
            await node.ReadAsync(0, head).ConfigureAwait(false);
        }

        return Probe(head, node.FileName);
    }
}
