using System.Buffers.Binary;
using System.Text.Json.Nodes;
using ExportServer.IntegrationTests.Qmp;
using ExportServer.IntegrationTests.Support;
using Xunit;

namespace ExportServer.IntegrationTests.Jobs;

/// <summary>
/// The job lifecycle events against qemu-storage-daemon: each scenario runs on both daemons, and
/// the job events (JOB_STATUS_CHANGE, BLOCK_JOB_READY, _PENDING, _COMPLETED, _CANCELLED, _ERROR:
/// name, id or device, status, type, operation, action, error) and the errors of refused commands
/// must be the same, in the same order. Per job exactly; across the jobs of a scenario too, except
/// waiting and aborting, which a job enters when its own work ends, so their order across jobs is
/// the order in which the copies happen to finish.
/// </summary>
public sealed class JobEventOracleTests
{
    private static readonly string[] JobEvents =
        ["JOB_STATUS_CHANGE", "BLOCK_JOB_READY", "BLOCK_JOB_PENDING", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_ERROR"];

    /// <summary>Slow enough that a job is still copying when the scenario pauses or cancels it (8 MiB at 64 KiB/s).</summary>
    private const long Slow = 64 * 1024;

    private static readonly Dictionary<string, Func<Scene, Task>> Runs = new()
    {
        ["stream"] = async s =>
        {
            var top = await s.ImageAsync("t", data: false, backing: await s.ImageAsync("b"));
            await s.AddAsync("top", top);
            await s.RunAsync("block-stream", new JsonObject { ["job-id"] = "j", ["device"] = "top" });
            await s.EndAsync("j");
        },
        ["commit"] = async s =>
        {
            var b = await s.ImageAsync("b");
            var m = await s.ImageAsync("m", backing: b);
            await s.AddAsync("top", await s.ImageAsync("t", data: false, backing: m));
            await s.RunAsync("block-commit", new JsonObject { ["job-id"] = "j", ["device"] = "top", ["top"] = m, ["base"] = b });
            await s.EndAsync("j");
        },
        ["commit-active"] = async s =>
        {
            await s.AddAsync("top", await s.ImageAsync("t", backing: await s.ImageAsync("b")));
            await s.RunAsync("block-commit", new JsonObject { ["job-id"] = "j", ["device"] = "top" });
            await s.WaitAsync("BLOCK_JOB_READY", "j");
            await s.RunAsync("block-job-complete", new JsonObject { ["device"] = "j" });
            await s.EndAsync("j");
        },
        ["mirror-complete"] = async s =>
        {
            await s.MirrorAsync();
            await s.WaitAsync("BLOCK_JOB_READY", "j");
            await s.RunAsync("block-job-complete", new JsonObject { ["device"] = "j" });
            await s.EndAsync("j");
        },
        ["mirror-cancel-ready"] = async s =>
        {
            await s.MirrorAsync();
            await s.WaitAsync("BLOCK_JOB_READY", "j");
            await s.RunAsync("block-job-cancel", new JsonObject { ["device"] = "j" });
            await s.EndAsync("j");
        },
        ["mirror-pause-resume-ready"] = async s =>
        {
            await s.MirrorAsync();
            await s.WaitAsync("BLOCK_JOB_READY", "j");
            await s.RunAsync("block-job-pause", new JsonObject { ["device"] = "j" });
            await s.StatusAsync("j", "standby");
            await s.RunAsync("block-job-resume", new JsonObject { ["device"] = "j" });
            await s.StatusAsync("j", "ready");
            await s.RunAsync("block-job-complete", new JsonObject { ["device"] = "j" });
            await s.EndAsync("j");
        },
        ["mirror-cancel-paused-ready"] = async s =>
        {
            await s.MirrorAsync();
            await s.WaitAsync("BLOCK_JOB_READY", "j");
            await s.RunAsync("block-job-pause", new JsonObject { ["device"] = "j" });
            await s.StatusAsync("j", "standby");
            await s.RunAsync("block-job-cancel", new JsonObject { ["device"] = "j" });
            await s.RunAsync("block-job-cancel", new JsonObject { ["device"] = "j", ["force"] = true });
            await s.EndAsync("j");
        },
        ["mirror-cancel-paused-running"] = async s =>
        {
            await s.MirrorAsync(Slow);
            await s.RunAsync("job-pause", new JsonObject { ["id"] = "j" });
            await s.StatusAsync("j", "paused");
            await s.RunAsync("block-job-cancel", new JsonObject { ["device"] = "j" });
            await s.RunAsync("job-cancel", new JsonObject { ["id"] = "j" });
            await s.EndAsync("j");
        },
        ["backup"] = async s =>
        {
            await s.RunAsync("blockdev-backup", await s.BackupAsync("j"));
            await s.EndAsync("j");
        },
        ["backup-cancel"] = async s =>
        {
            await s.RunAsync("blockdev-backup", await s.BackupAsync("j", Slow));
            await s.RunAsync("block-job-cancel", new JsonObject { ["device"] = "j" });
            await s.EndAsync("j");
        },
        ["backup-cancel-paused"] = async s =>
        {
            await s.RunAsync("blockdev-backup", await s.BackupAsync("j", Slow));

            // Paused and running again as the transaction ends, before the command returns.
            await s.StatusAsync("j", "paused");
            await s.StatusAsync("j", "running");
            await s.RunAsync("block-job-pause", new JsonObject { ["device"] = "j" });
            await s.StatusAsync("j", "paused");
            await s.RunAsync("block-job-cancel", new JsonObject { ["device"] = "j" });
            await s.RunAsync("block-job-cancel", new JsonObject { ["device"] = "j", ["force"] = true });
            await s.EndAsync("j");
        },
        ["backup-finalize"] = async s =>
        {
            var args = await s.BackupAsync("j");
            args["auto-finalize"] = false;
            await s.RunAsync("blockdev-backup", args);
            await s.WaitAsync("BLOCK_JOB_PENDING", "j");
            await s.RunAsync("job-dismiss", new JsonObject { ["id"] = "j" });
            await s.RunAsync("job-finalize", new JsonObject { ["id"] = "j" });
            await s.EndAsync("j");
        },
        ["backup-dismiss"] = async s =>
        {
            var args = await s.BackupAsync("j");
            args["auto-dismiss"] = false;
            await s.RunAsync("blockdev-backup", args);
            await s.StatusAsync("j", "concluded");
            await s.RunAsync("job-cancel", new JsonObject { ["id"] = "j" });
            await s.RunAsync("job-dismiss", new JsonObject { ["id"] = "j" });
            await s.EndAsync("j");
            await s.RunAsync("job-dismiss", new JsonObject { ["id"] = "j" });
        },
        ["backup-read-error"] = async s =>
        {
            await s.RunAsync("blockdev-backup", await s.BackupAsync("j", corrupt: true));
            await s.EndAsync("j");
        },
        ["backup-read-error-stop"] = async s =>
        {
            var args = await s.BackupAsync("j", corrupt: true);
            args["on-source-error"] = "stop";
            await s.RunAsync("blockdev-backup", args);
            await s.WaitAsync("BLOCK_JOB_ERROR", "j");
            await s.StatusAsync("j", "paused");
            await s.RunAsync("block-job-cancel", new JsonObject { ["device"] = "j" });
            await s.RunAsync("job-cancel", new JsonObject { ["id"] = "j" });
            await s.EndAsync("j");
        },
        ["mirror-read-error"] = async s =>
        {
            await s.AddAsync("src", await s.ImageAsync("s", corrupt: true), readOnly: true);
            await s.AddAsync("tgt", await s.ImageAsync("t", data: false));
            await s.RunAsync("blockdev-mirror", new JsonObject { ["job-id"] = "j", ["device"] = "src", ["target"] = "tgt", ["sync"] = "full" });
            await s.EndAsync("j");
        },
        ["grouped"] = async s =>
        {
            await s.GroupAsync(await s.BackupAsync("ja"), await s.BackupAsync("jb"));
            await s.EndAsync("ja", "jb");
        },
        ["grouped-cancel"] = async s =>
        {
            await s.GroupAsync(await s.BackupAsync("ja", Slow), await s.BackupAsync("jb", Slow));
            await s.RunAsync("block-job-cancel", new JsonObject { ["device"] = "ja" });
            await s.EndAsync("ja", "jb");
        },
        ["grouped-finalize"] = async s =>
        {
            var a = await s.BackupAsync("ja");
            var b = await s.BackupAsync("jb");
            a["auto-finalize"] = false;
            b["auto-finalize"] = false;
            await s.GroupAsync(a, b);
            await s.WaitAsync("BLOCK_JOB_PENDING", "ja", "jb");
            await s.RunAsync("job-finalize", new JsonObject { ["id"] = "ja" });
            await s.EndAsync("ja", "jb");
        },
        ["grouped-one-auto-finalize"] = async s =>
        {
            var a = await s.BackupAsync("ja");
            a["auto-finalize"] = false;
            await s.GroupAsync(a, await s.BackupAsync("jb"));
            await s.WaitAsync("BLOCK_JOB_PENDING", "ja");
            await s.RunAsync("job-finalize", new JsonObject { ["id"] = "jb" });
            await s.EndAsync("ja", "jb");
        },
        ["grouped-prepare-fails"] = async s =>
        {
            var b = await s.BackupAsync("jb");
            b["target"] = "missing";
            await s.GroupAsync(await s.BackupAsync("ja"), b);
            await s.EndAsync("ja");
        },
    };

    public static TheoryData<string> Scenarios => new(Runs.Keys);

    [Theory]
    [MemberData(nameof(Scenarios))]
    public async Task EventsAreQemuStorageDaemons(string scenario)
    {
        using var dir = new TempDir();
        var expected = await RunAsync(dir, scenario, qsd: true);
        var actual = await RunAsync(dir, scenario, qsd: false);

        Assert.Equal(string.Join('\n', expected.Log), string.Join('\n', actual.Log));
        Assert.Equal(expected.Jobs.Keys.Order(), actual.Jobs.Keys.Order());
        foreach (var (job, events) in expected.Jobs)
        {
            Assert.Equal(string.Join('\n', events), string.Join('\n', actual.Jobs[job]));
        }

        Assert.NotEmpty(actual.Jobs);
        var missing = actual.EventNames.Except(actual.SchemaEvents).ToList();
        Assert.True(missing.Count == 0, "query-qmp-schema lacks " + string.Join(", ", missing));
    }

    private sealed record Outcome(List<string> Log, Dictionary<string, List<string>> Jobs, HashSet<string> EventNames, HashSet<string> SchemaEvents);

    private static async Task<Outcome> RunAsync(TempDir dir, string scenario, bool qsd)
    {
        var tag = qsd ? "qsd" : "es";
        await using var d = await JobDaemon.StartAsync(dir, tag, qsd);
        var scene = new Scene(d.Qmp, dir, tag);
        await Runs[scenario](scene).WaitAsync(TimeSpan.FromMinutes(2));

        var jobEvents = d.Qmp.EventLog.Where(e => JobEvents.Contains(e["event"]!.GetValue<string>())).ToList();
        var jobs = new Dictionary<string, List<string>>();
        foreach (var e in jobEvents)
        {
            var id = JobId(e);
            if (!jobs.TryGetValue(id, out var list))
            {
                jobs[id] = list = [];
            }

            list.Add(Describe(e));
        }

        // Across jobs, the order of waiting and aborting is the order in which their copies end.
        var acrossJobs = jobs.Count > 1
            ? scene.Log.Where(l => !l.EndsWith(" waiting", StringComparison.Ordinal) && !l.EndsWith(" aborting", StringComparison.Ordinal))
            : scene.Log;
        var schema = qsd ? [] : ((JsonArray)await d.Qmp.ExecuteAsync("query-qmp-schema"))
            .Where(e => e!["meta-type"]!.GetValue<string>() == "event")
            .Select(e => e!["name"]!.GetValue<string>())
            .ToHashSet();
        return new Outcome(acrossJobs.ToList(), jobs, jobEvents.Select(e => e["event"]!.GetValue<string>()).ToHashSet(), schema);
    }

    private static string JobId(JsonObject e) => (e["data"]!["id"] ?? e["data"]!["device"])!.GetValue<string>();

    /// <summary>An event without its timestamp and progress figures: what must be equal.</summary>
    private static string Describe(JsonObject e)
    {
        var name = e["event"]!.GetValue<string>();
        var data = e["data"]!;
        var text = name == "JOB_STATUS_CHANGE" ? $"{JobId(e)} {data["status"]}" : $"{name} {JobId(e)}";
        foreach (var field in new[] { "type", "operation", "action", "error" })
        {
            if (data[field] is { } value)
            {
                text += $" {field}={value}";
            }
        }

        return text;
    }

    /// <summary>One scenario on one daemon: images made with qemu-img and qemu-io, commands, waits on the event log.</summary>
    private sealed class Scene(QmpClient qmp, TempDir dir, string tag)
    {
        private int _cursor;
        private int _logged;

        /// <summary>The job events and the refused commands, in order.</summary>
        public List<string> Log { get; } = [];

        /// <summary>A qcow2 image with 2 MiB of data (unless not <paramref name="data"/>); <paramref name="corrupt"/>: its first L1 entry points into the middle of a cluster.</summary>
        public async Task<string> ImageAsync(string name, bool data = true, string? backing = null, bool corrupt = false)
        {
            var path = dir[$"{tag}-{name}.qcow2"];
            List<string> args = ["create", "-q", "-f", "qcow2"];
            if (backing is not null)
            {
                args.AddRange(["-b", backing, "-F", "qcow2"]);
            }

            await JobDaemon.QemuImgAsync([.. args, path, "8M"]);
            if (data)
            {
                await JobDaemon.QemuIoAsync(path, "qcow2", "write -P 0x5a 0 2M");
            }

            if (corrupt)
            {
                await using var f = File.Open(path, FileMode.Open, FileAccess.ReadWrite);
                var word = new byte[8];
                f.Position = 40;
                await f.ReadExactlyAsync(word);
                var l1 = BinaryPrimitives.ReadInt64BigEndian(word);
                f.Position = l1;
                await f.ReadExactlyAsync(word);
                BinaryPrimitives.WriteInt64BigEndian(word, BinaryPrimitives.ReadInt64BigEndian(word) + 512);
                f.Position = l1;
                await f.WriteAsync(word);
            }

            return path;
        }

        public Task AddAsync(string node, string file, bool readOnly = false) =>
            qmp.ExecuteAsync("blockdev-add", new JsonObject
            {
                ["driver"] = "qcow2",
                ["node-name"] = node,
                ["read-only"] = readOnly,
                ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = file },
            });

        /// <summary>A full mirror of a new source 's' to a new target 't' as job 'j'.</summary>
        public async Task MirrorAsync(long speed = 0)
        {
            await AddAsync("src", await ImageAsync("s"));
            await AddAsync("tgt", await ImageAsync("t", data: false));
            var args = new JsonObject { ["job-id"] = "j", ["device"] = "src", ["target"] = "tgt", ["sync"] = "full" };
            if (speed > 0)
            {
                args["speed"] = speed;
            }

            await RunAsync("blockdev-mirror", args);
        }

        /// <summary>blockdev-backup's arguments for job <paramref name="job"/>, from a new source to a new target named after it.</summary>
        public async Task<JsonObject> BackupAsync(string job, long speed = 0, bool corrupt = false)
        {
            await AddAsync("s" + job, await ImageAsync("s" + job, corrupt: corrupt), readOnly: corrupt);
            await AddAsync("t" + job, await ImageAsync("t" + job, data: false));
            var args = new JsonObject { ["job-id"] = job, ["device"] = "s" + job, ["target"] = "t" + job, ["sync"] = "full" };
            if (speed > 0)
            {
                args["speed"] = speed;
            }

            return args;
        }

        /// <summary>A transaction of these backups with completion-mode grouped.</summary>
        public Task GroupAsync(params JsonObject[] backups) =>
            RunAsync("transaction", new JsonObject
            {
                ["actions"] = new JsonArray(backups.Select(b => (JsonNode)new JsonObject { ["type"] = "blockdev-backup", ["data"] = b }).ToArray()),
                ["properties"] = new JsonObject { ["completion-mode"] = "grouped" },
            });

        /// <summary>Runs a command of the scenario; a refusal is part of what is compared.</summary>
        public async Task RunAsync(string command, JsonObject args)
        {
            var reply = await qmp.SendAsync(command, args);
            Collect();
            if (reply["error"] is { } error)
            {
                Log.Add($"{command} refused: {error["class"]}: {error["desc"]}");
            }
        }

        public Task StatusAsync(string job, string status) =>
            WaitAsync(e => e["event"]!.GetValue<string>() == "JOB_STATUS_CHANGE" && JobId(e) == job && e["data"]!["status"]!.GetValue<string>() == status);

        /// <summary>Waits for event <paramref name="name"/> of each job named, in whatever order they come.</summary>
        public Task WaitAsync(string name, params string[] jobs) =>
            EachAsync(jobs, job => e => e["event"]!.GetValue<string>() == name && JobId(e) == job);

        /// <summary>Waits until every job named has left (status null), in whatever order they leave.</summary>
        public Task EndAsync(params string[] jobs) =>
            EachAsync(jobs, job => e => e["event"]!.GetValue<string>() == "JOB_STATUS_CHANGE" && JobId(e) == job && e["data"]!["status"]!.GetValue<string>() == "null");

        private async Task EachAsync(string[] jobs, Func<string, Func<JsonObject, bool>> match)
        {
            var start = _cursor;
            var end = _cursor;
            foreach (var job in jobs)
            {
                _cursor = start;
                await WaitAsync(match(job));
                end = Math.Max(end, _cursor);
            }

            _cursor = end;
        }

        /// <summary>Waits for the next event that matches after the last one waited for.</summary>
        private async Task WaitAsync(Func<JsonObject, bool> match)
        {
            while (true)
            {
                for (; _cursor < qmp.EventLog.Count; _cursor++)
                {
                    if (JobEvents.Contains(qmp.EventLog[_cursor]["event"]!.GetValue<string>()) && match(qmp.EventLog[_cursor]))
                    {
                        _cursor++;
                        Collect();
                        return;
                    }
                }

                await qmp.ReadAsync();
            }
        }

        /// <summary>Moves the job events received so far into <see cref="Log"/>.</summary>
        private void Collect()
        {
            for (; _logged < qmp.EventLog.Count; _logged++)
            {
                if (JobEvents.Contains(qmp.EventLog[_logged]["event"]!.GetValue<string>()))
                {
                    Log.Add(Describe(qmp.EventLog[_logged]));
                }
            }
        }
    }
}
