using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.MagicOnly;

/// <summary>A format recognised by its magic alone, for error messages that name it.</summary>
internal sealed class MagicOnlyProbe(string name, int score, MagicOnlyProbe.Match match) : IFormatProbe
{
    public delegate bool Match(ReadOnlySpan<byte> head, string? fileName);

    public string Name => name;

    public int Probe(ReadOnlySpan<byte> head, string? fileName) => match(head, fileName) ? score : 0;
}
