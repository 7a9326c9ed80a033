using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Nbd.Tls;

/// <summary>
/// The <c>tls-creds-psk</c> object kind: <c>dir</c> holds <c>keys.psk</c> (and, for a server, an optional
/// <c>dh-params.pem</c>); a client names itself with <c>username</c> (QEMU's default "qemu"), a server
/// must not. Errors are QEMU's.
/// </summary>
public sealed class TlsCredsPskType : IObjectType
{
    private const string DefaultUsername = "qemu";

    public string QomType => "tls-creds-psk";

    public void Add(NamedObjects objects, string id, OptionReader options)
    {
        var common = TlsCommonOptions.Read(QomType, options);
        var username = options.GetString("username");
        options.EnsureAllConsumed();

        if (common.Endpoint == TlsEndpoint.Server)
        {
            if (username is not null)
            {
                throw BlockException.Invalid("username should not be set when endpoint=server");
            }

            var dhPath = common.File("dh-params.pem", required: false);
            var keysPath = common.File(PskKeyFile.Name, required: true)!;
            if (dhPath is not null)
            {
                // DHE-PSK uses the library's named groups; the file is still read so that an unreadable one fails here as in QEMU.
                TlsCommonOptions.ReadFile(dhPath);
            }

            objects.Add(id, new TlsCredsPsk(id, common.Endpoint, keysPath, null, null));
            return;
        }

        var path = common.File(PskKeyFile.Name, required: true)!;
        username ??= DefaultUsername;
        var hex = PskKeyFile.FindHexKey(PskKeyFile.Read(path), username)
            ?? throw BlockException.Invalid($"Username {username} not found in PSK file {path}");
        var key = PskKeyFile.Decode(hex, out var error)
            ?? throw BlockException.Invalid($"Cannot set PSK client credentials: {error}");
        objects.Add(id, new TlsCredsPsk(id, common.Endpoint, path, username, key));
    }

    public bool TryDelete(NamedObjects objects, string id) => TlsCommonOptions.TryDelete<TlsCredsPsk>(objects, id);
}
