namespace ExportServer.IntegrationTests.Support;

/// <summary>
/// Rounds of kill -9 of a daemon while a libnbd client writes into its export: after each round the
/// image must pass the format's check, and at the end every write that was durable (acknowledged
/// with FUA, or followed by an acknowledged flush) must read back.
/// </summary>
internal static class KillDuringWrites
{
    /// <summary>
    /// Runs <paramref name="rounds"/> rounds against the daemons <paramref name="start"/> makes (serving
    /// <paramref name="image"/> writable as "disk" on <paramref name="uri"/>); <paramref name="check"/>
    /// asserts the image is sound after each kill. Then reads every durable write back with qemu-io.
    /// </summary>
    public static async Task RunAsync(
        TempDir dir, string image, string format, string uri, Func<Task<Daemon>> start, int rounds, int seed, Func<int, Task> check, DurableWriter? writer = null)
    {
        // Each round writes its own 4000 slots, at sizes within and across clusters and partial clusters.
        writer ??= new DurableWriter(dir, 196608, [0, 512, 4096, 65536 - 1024], [512, 4096, 65536, 100000, 131072]);
        var rnd = new Random(seed);
        for (var round = 0; round < rounds; round++)
        {
            var d = await start();
            var writing = writer.StartRound(uri, round, round * 4000, (round + 1) * 4000, 1);
            await writer.WaitUntilWritingAsync(writing, round);
            await Task.Delay(300 + rnd.Next(1200));
            d.Signal(9);
            await d.WaitForExitAsync(TimeSpan.FromSeconds(10));
            await d.DisposeAsync();
            await writer.EndRoundAsync(writing, round);
            await check(round);
        }

        await writer.VerifyAsync(format, image, 100);
    }
}
