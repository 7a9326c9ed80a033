namespace ExportServer.Block.Core;

/// <summary>
/// Opt-in for format drivers that recognise their images (QEMU's bdrv_probe): a score for the first
/// bytes of a file, 0 for "not mine", 100 for a certain magic; raw answers 1 so that anything wins over it.
/// </summary>
public interface IFormatProbe
{
    /// <summary>QEMU's name for the format the score is about (the driver's name for a driver).</summary>
    string Name { get; }

    /// <summary>
    /// Scores <paramref name="head"/>, the first bytes of the file (up to <see cref="FormatProber.ProbeLength"/>;
    /// fewer for a short file). <paramref name="fileName"/> is given where known (dmg is recognised by it).
    /// </summary>
    int Probe(ReadOnlySpan<byte> head, string? fileName);
}
