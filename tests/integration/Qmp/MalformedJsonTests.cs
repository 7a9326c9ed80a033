using System.Text;
using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Qmp;

/// <summary>
/// Bytes a fuzzer found to wedge or kill the monitor, sent to export-server and to
/// qemu-storage-daemon: both answer them with the same errors, answer the next command, greet the
/// next client and exit 0 on SIGTERM.
/// </summary>
public sealed class MalformedJsonTests
{
    private static readonly byte[][] Inputs =
    [
        """{"execute": "query-version", "execute": "query-name"}"""u8.ToArray(),
        """{"execute": "query-block-exports", "arguments": {"a": 1, "a": 2}}"""u8.ToArray(),
        """{"execute": "query-version", "id": 1, "id": 2}"""u8.ToArray(),
        "{\"execute\": \"query-version\"\u0001"u8.ToArray(),
        "[\"a\",\u0001"u8.ToArray(),
        [.. Enumerable.Repeat((byte)'{', 2000), 1],
        [.. "{\"execute\": \"query-version\""u8, 0xFF],
        [.. "{\"execute\": \"q"u8, 0x80, .. "\"}"u8],
        "\"ab\u0001cd\u0001"u8.ToArray(),
        "}"u8.ToArray(),
        [.. Enumerable.Repeat((byte)'[', 1025), .. Enumerable.Repeat((byte)']', 3), 1],
    ];

    private static async Task<List<string>> RunAsync(Daemon d, string socket)
    {
        var seen = new List<string>();
        await using (var c = await QmpClient.ConnectAsync(socket))
        {
            foreach (var input in Inputs)
            {
                await c.WriteAsync([.. input, .. "\n{\"execute\":\"query-block-exports\",\"id\":\"next\"}\n"u8]);
                while (true)
                {
                    var reply = await c.ReadAsync();
                    seen.Add(reply["error"] is { } e ? $"{e["class"]}: {e["desc"]}" : reply.ToJsonString());
                    if (reply["id"]?.GetValue<string>() == "next")
                    {
                        break;
                    }
                }
            }
        }

        await using (var again = await QmpClient.ConnectAsync(socket))
        {
            seen.Add((await again.ExecuteAsync("query-block-exports")).ToJsonString());
        }

        seen.Add($"exit {await d.StopAsync()}");
        return seen;
    }

    [Fact]
    public async Task BadJsonIsAnsweredAsQemuAnswersItAndTheMonitorGoesOn()
    {
        using var dir = new TempDir();
        string[] Args(string name) => ["--chardev", $"socket,id=m,path={dir[name]},server=on,wait=off", "--monitor", "chardev=m"];
        await using var qsd = await Daemon.StartQsdAsync(dir, Args("qsd.sock"));
        var expected = await RunAsync(qsd, dir["qsd.sock"]);
        await using var ours = await Daemon.StartAsync(dir, Args("ours.sock"));
        var actual = await RunAsync(ours, dir["ours.sock"]);

        Assert.Contains("GenericError: JSON parse error, duplicate key", actual);
        Assert.Contains("GenericError: JSON nesting depth limit exceeded", actual);
        Assert.Equal("exit 0", actual[^1]);
        Assert.Equal(expected, actual);
        Assert.DoesNotContain("Exception", ours.Stderr);
    }
}
