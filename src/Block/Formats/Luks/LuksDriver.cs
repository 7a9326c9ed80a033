using System.Security.Cryptography;
using System.Text.Json.Nodes;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// The "luks" driver: LUKS1 images opened with a passphrase secret (key-secret), created as QEMU creates
/// them; LUKS2 images (cryptsetup's default) opened too, though only LUKS1 is probed, as QEMU probes.
/// </summary>
internal sealed class LuksDriver : IBlockDriver, IFormatProbe, IImageCreator, IImageFileCreator
{
    /// <summary>qemu-img's options in the order its line prints them (block_crypto_create_opts_luks).</summary>
    private static readonly (CreateOption Option, string? QapiName)[] QemuImgOptions =
    [
        (new(CreateOption.Size, CreateOptionType.Size), "size"),
        (new("key-secret", CreateOptionType.String), "key-secret"),
        (new("cipher-alg", CreateOptionType.String), "cipher-alg"),
        (new("cipher-mode", CreateOptionType.String), "cipher-mode"),
        (new("ivgen-alg", CreateOptionType.String), "ivgen-alg"),
        (new("ivgen-hash-alg", CreateOptionType.String), "ivgen-hash-alg"),
        (new("hash-alg", CreateOptionType.String), "hash-alg"),
        (new("iter-time", CreateOptionType.Number), "iter-time"),
    ];

    public static LuksDriver Instance { get; } = new();

    public string Name => "luks";

    public IReadOnlyList<CreateOption> CreateOptions { get; } = QemuImgOptions.Select(o => o.Option).ToArray();

    /// <summary>The magic and version 1, as QEMU's qcrypto_block_luks_has_format.</summary>
    public int Probe(ReadOnlySpan<byte> head, string? fileName) => LuksHeader.HasMagic(head) ? 100 : 0;

    public async ValueTask<BlockNode> OpenAsync(BlockOpenContext context, OptionReader options)
    {
        var secretId = options.GetString("key-secret");
        var file = await context.OpenFileChildAsync(options).ConfigureAwait(false);
        if (secretId is null)
        {
            throw BlockException.Invalid($"Parameter '{options.FullName("key-secret")}' is required for cipher");
        }

        var bytes = new byte[LuksFormat.HeaderSize];
        await file.ReadAsync(0, bytes.AsMemory(0, (int)Math.Min(file.Length, bytes.Length))).ConfigureAwait(false);
        if (Luks2BinaryHeader.IsLuks2(bytes))
        {
            var passphrase = LuksCreator.Passphrase(context.Graph.Objects, secretId);
            try
            {
                return await Luks2Image.OpenNodeAsync(context.NodeName, context.ReadOnly, file, passphrase).ConfigureAwait(false);
            }
            finally
            {
                CryptographicOperations.ZeroMemory(passphrase);
            }
        }

        var (volume, cipher) = await LuksVolume.OpenAsync(file, 0, file.Length, context.Graph.Objects, secretId).ConfigureAwait(false);
        return new LuksNode(context.NodeName, context.ReadOnly, file, volume, cipher);
    }

    /// <summary>BlockdevCreateOptionsLUKS: file (an existing node), size, preallocation and the crypto options.</summary>
    public ValueTask CreateAsync(BlockGraph graph, OptionReader options) =>
        ImageCreation.FormatNodeAsync(graph, options, LuksCreateOptions.Read, (file, create) => CreateOnAsync(graph, file, create));

    public async ValueTask CreateFileAsync(BlockGraph graph, string fileName, JsonObject options)
    {
        var reader = new OptionReader(ImageCreation.RenameOptions(options, QemuImgOptions));
        var create = LuksCreateOptions.Read(reader);
        reader.EnsureAllConsumed();
        await ImageCreation.FormatNewFileAsync(graph, fileName, file => CreateOnAsync(graph, file, create)).ConfigureAwait(false);
    }

    private static async ValueTask CreateOnAsync(BlockGraph graph, BlockNode file, LuksCreateOptions create)
    {
        var passphrase = LuksCreator.Passphrase(graph.Objects, create.Crypto.KeySecret);
        try
        {
            await LuksCreator.CreateAsync(file, create, passphrase).ConfigureAwait(false);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(passphrase);
        }
    }
}
