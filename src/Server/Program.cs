using System.Runtime.InteropServices;
using ExportServer.Block.Core;
using ExportServer.Block.Exports;
using ExportServer.Server.Cli;
using ExportServer.Server.Daemon;
using ExportServer.Server.Logging;
using ExportServer.Server.Qmp;
using Microsoft.Extensions.Logging;

namespace ExportServer.Server;

internal static class Program
{
    private const string Name = "export-server";

    private static async Task<int> Main(string[] args)
    {
        SocketEventLoop.Configure();
        if (args is ["create", .. var createArgs])
        {
            return await CreateCommand.RunAsync(createArgs, Console.Out, Console.Error, Name).ConfigureAwait(false);
        }

        if (args is ["bitmap-rotate", .. var rotateArgs])
        {
            return await BitmapRotateCommand.RunAsync(rotateArgs, Console.Error, Name).ConfigureAwait(false);
        }

        string? serveUri = null;
        if (args is ["serve" or "mount", .. var friendlyArgs])
        {
            try
            {
                args = args[0] == "serve"
                    ? ServeCommand.Translate(friendlyArgs, Console.Error, out serveUri)
                    : MountCommand.Translate(friendlyArgs, Console.Error);
            }
            catch (CommandLineException e)
            {
                Console.Error.WriteLine($"{Name}: {e.Message}");
                return 1;
            }
        }

        CommandLine cl;
        try
        {
            cl = CommandLine.Parse(args);
        }
        catch (CommandLineException e)
        {
            Console.Error.WriteLine($"{(e.FromGetopt ? Environment.ProcessPath ?? Name : Name)}: {e.Message}");
            return 1;
        }

        if (cl.Help)
        {
            Console.WriteLine(CommandLine.HelpText);
            return 0;
        }

        if (cl.Version)
        {
            Console.WriteLine($"{Name} version {typeof(Program).Assembly.GetName().Version} (qemu-storage-daemon 7.2 compatible)");
            return 0;
        }

        try
        {
            RequestPolling.FromEnvironment();
        }
        catch (BlockException e)
        {
            Console.Error.WriteLine($"{Name}: {e.Message}");
            return 1;
        }

        if (cl.Daemonize && !Daemonizer.IsChild)
        {
            return Daemonizer.RunParent(args);
        }

        if (Daemonizer.IsChild)
        {
            Daemonizer.DetachSession();
        }

        ThreadPool.GetMinThreads(out var workers, out var io);
        ThreadPool.SetMinThreads(Math.Max(workers, 32), io);

        using var loggers = new StderrLoggerFactory(new StderrLoggerProvider(cl.TracePatterns));
        await using var daemon = new StorageDaemon(loggers);
        await using var qmp = new QmpService(daemon, loggers.CreateLogger("ExportServer.Qmp"));
        // qemu-storage-daemon quits on SIGINT even when it was started with SIGINT ignored, as every
        // background job of a non-interactive shell is; the runtime leaves an inherited SIG_IGN for
        // SIGINT in place (its handler is never installed), so the disposition goes back to the default
        // before the registration below.
        Native.Libc.signal(Native.Libc.SIGINT, Native.Libc.SIG_DFL);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Quit);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Quit);
        using var sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, Quit);

        void Quit(PosixSignalContext context)
        {
            context.Cancel = true;
            daemon.RequestQuit();
        }

        PidFile? pidFile = null;
        try
        {
            foreach (var option in cl.Options)
            {
                try
                {
                    await ExecuteAsync(daemon, qmp, option).ConfigureAwait(false);
                }
                catch (BlockException e)
                {
                    Console.Error.WriteLine($"{Name}: {option.Name} {option.Text}: {e.MessageWithHint}");
                    return 1;
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // Never a stack trace for bad input: the errno's text, as QEMU would print it.
                    Console.Error.WriteLine($"{Name}: {option.Name} {option.Text}: {BlockException.Reason(e)}");
                    return 1;
                }
            }

            if (serveUri is not null)
            {
                // Where `serve` listens, once it does: the URI to hand to nbdinfo, qemu-img or nbdcopy.
                Console.WriteLine(serveUri);
            }

            if (cl.PidFile is not null)
            {
                try
                {
                    pidFile = PidFile.Write(cl.PidFile);
                }
                catch (BlockException e)
                {
                    Console.Error.WriteLine($"{Name}: {e.MessageWithHint}");
                    return 1;
                }
            }

            if (Daemonizer.IsChild)
            {
                Daemonizer.SignalReady();
            }

            qmp.StartupComplete();

            await daemon.QuitRequested.ConfigureAwait(false);
            return 0;
        }
        finally
        {
            pidFile?.Dispose();
        }
    }

    private static async ValueTask ExecuteAsync(StorageDaemon daemon, QmpService qmp, CliOption option)
    {
        switch (option.Kind)
        {
            case CliOptionKind.Blockdev:
                await daemon.BlockdevAddAsync(option.Value).ConfigureAwait(false);
                break;
            case CliOptionKind.NbdServer:
                daemon.Nbd.Start(option.Value);
                break;
            case CliOptionKind.Export:
                await daemon.Exports.AddAsync(option.Value).ConfigureAwait(false);
                break;
            case CliOptionKind.Object:
                daemon.Objects.Add(option.Value);
                break;
            case CliOptionKind.Chardev:
                daemon.Chardevs.Add(option.Value);
                break;
            case CliOptionKind.Monitor:
                qmp.StartMonitor(daemon.Chardevs.AddMonitor(option.Value));
                break;
        }
    }
}
