using Xunit;
using static ExportServer.UnitTests.Qcow2.QemuTools;

namespace ExportServer.UnitTests.Qcow2;

/// <summary>
/// Copies of an in-memory image file taken just before some of the driver's writes (every
/// <c>every</c>-th write, from the <c>phase</c>-th): what a kill at that moment would leave.
/// </summary>
internal sealed class CrashCaptures
{
    private const int Max = 40;
    private readonly List<byte[]> _captures = new();
    private int _writes;

    public CrashCaptures(InMemoryFileNode file, int every, int phase)
    {
        file.BeforeWrite = f =>
        {
            if (_writes++ % every == phase && _captures.Count < Max)
            {
                _captures.Add(f.Snapshot());
            }
        };
    }

    /// <summary>Every capture passes `qemu-img check` with at most leaked clusters.</summary>
    public void AssertAtMostLeaks(TempDir dir)
    {
        Assert.True(_captures.Count >= 10, $"only {_captures.Count} captures");
        for (var i = 0; i < _captures.Count; i++)
        {
            File.WriteAllBytes(dir["crash.qcow2"], _captures[i]);
            var (code, output) = Check(dir["crash.qcow2"]);
            Assert.True(code is 0 or 3, $"capture {i}: qemu-img check exit {code}: {output}");
        }
    }
}
