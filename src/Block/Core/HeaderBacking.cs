using System.Text.Json.Nodes;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Core;

/// <summary>
/// Opening the backing file an image names in its own metadata (a qcow2 header, a vmdk descriptor's
/// parent): relative to the image's directory, read-only, with the named format or a probe. The
/// files of the chain being opened in this async flow are remembered across formats, so a loop
/// through any mix of formats is refused instead of recursing.
/// </summary>
public static class HeaderBacking
{
    private static readonly AsyncLocal<List<string>?> s_opening = new();

    /// <summary>
    /// The backing child of a format node: the option 'backing' when given (null: none, a node name,
    /// or an object opened inline), else the backing file the image names (<paramref name="name"/>, may be null).
    /// </summary>
    public static async ValueTask<BlockNode?> OpenOptionOrHeaderAsync(
        BlockOpenContext context, OptionReader options, BlockNode file, string? name, string? format, string driverName)
    {
        if (options.Options.TryGetPropertyValue("backing", out var raw))
        {
            options.Consume("backing");
            return raw is null ? null : await context.OpenChildAsync(options, "backing").ConfigureAwait(false);
        }

        return name is null ? null : await OpenAsync(context, file, name, format, driverName).ConfigureAwait(false);
    }

    /// <summary>
    /// Gives a format node just opened its backing child (<see cref="OpenOptionOrHeaderAsync"/>) through
    /// <paramref name="attach"/>; when that fails the node is disposed and the error passed on.
    /// </summary>
    public static async ValueTask<T> AttachToAsync<T>(
        T node, Action<BlockNode> attach, BlockOpenContext context, OptionReader options, BlockNode file, string? name, string? format, string driverName)
        where T : BlockNode
    {
        try
        {
            var backing = await OpenOptionOrHeaderAsync(context, options, file, name, format, driverName).ConfigureAwait(false);
            if (backing is not null)
            {
                attach(backing);
            }

            return node;
        }
        catch
        {
            await node.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Opens <paramref name="name"/> (as recorded by the image in <paramref name="file"/>) as the backing child.</summary>
    public static async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, BlockNode file, string name, string? format, string driverName)
    {
        // A name a protocol claims (rbd:pool/image, nbd://host/export) is not a path (QEMU's path_has_protocol).
        var protocolOptions = context.Graph.ProtocolOptions(name);
        var isProtocol = protocolOptions["driver"]!.GetValue<string>() != "file";
        var path = isProtocol ? name : BackingFileName.Resolve(file.FileName, name);
        var chain = s_opening.Value ?? new List<string> { Path.GetFullPath(file.FileName.Length > 0 ? file.FileName : ".") };
        if (chain.Contains(Path.GetFullPath(path)))
        {
            throw BlockException.Invalid($"{driverName}: backing file loop: {string.Join(" -> ", chain.Select(c => $"'{c}'"))} -> '{path}'");
        }

        var previous = s_opening.Value;
        s_opening.Value = [.. chain, Path.GetFullPath(path)];
        try
        {
            var fileOptions = isProtocol ? protocolOptions : new JsonObject { ["driver"] = "file", ["filename"] = path };
            fileOptions["read-only"] = true;
            if (format is null)
            {
                var protocol = await OpenInlineAsync(context, "backing", fileOptions).ConfigureAwait(false);
                format = await context.Graph.Probes.ProbeAsync(protocol).ConfigureAwait(false);
                if (format == "raw" && !context.Graph.HasDriver("raw"))
                {
                    return protocol;
                }

                return await OpenInlineAsync(context, "backing", new JsonObject
                {
                    ["driver"] = format,
                    ["file"] = protocol.NodeName,
                    ["read-only"] = true,
                }).ConfigureAwait(false);
            }

            return await OpenInlineAsync(context, "backing", new JsonObject
            {
                ["driver"] = format,
                ["file"] = fileOptions,
                ["read-only"] = true,
            }).ConfigureAwait(false);
        }
        finally
        {
            s_opening.Value = previous;
        }
    }

    /// <summary>Opens a child from options built by the driver, with the parent's inherited settings.</summary>
    public static async ValueTask<BlockNode> OpenInlineAsync(BlockOpenContext context, string key, JsonObject child)
    {
        var holder = new OptionReader(new JsonObject { [key] = child });
        return (await context.OpenChildAsync(holder, key).ConfigureAwait(false))!;
    }
}
