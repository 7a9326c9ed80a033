using System.Runtime.InteropServices;
using ExportServer.Block.Core;
using ExportServer.Block.Core.Options;

namespace ExportServer.Block.Secrets;

/// <summary>
/// The <c>secret_keyring</c> object: a secret read from the kernel key retention service by its
/// serial number (<c>keyctl add user NAME DATA @u</c> prints one), then decoded and decrypted as a
/// <c>secret</c> is (<c>format</c>, <c>keyid</c>, <c>iv</c>), as QEMU loads it.
/// </summary>
public sealed partial class SecretKeyringObjectType : IObjectType
{
    /// <summary>KEYCTL_READ of keyctl(2).</summary>
    private const long KeyctlRead = 11;

    public string QomType => "secret_keyring";

    public void Add(NamedObjects objects, string id, OptionReader options)
    {
        var serial = options.GetInt("serial");
        var base64 = SecretObjectType.ReadFormat(options);
        var keyId = options.GetString("keyid");
        var iv = options.GetString("iv");
        if (options.Has("loaded"))
        {
            throw BlockException.Invalid("Property 'secret_keyring.loaded' is not writable");
        }

        options.EnsureAllConsumed();
        if (serial is not { } s)
        {
            throw BlockException.Invalid($"Parameter '{options.FullName("serial")}' is missing");
        }

        if (s is < int.MinValue or > int.MaxValue)
        {
            throw BlockException.Invalid($"Parameter '{options.FullName("serial")}' expects int32");
        }

        objects.Add(id, new Secret(id, SecretObjectType.Decode(objects, Read((int)s), base64, keyId, iv)));
    }

    public bool TryDelete(NamedObjects objects, string id)
    {
        if (objects.TryGet<Secret>(id) is null)
        {
            return false;
        }

        objects.Remove(id);
        return true;
    }

    /// <summary>The key's payload: its length first (a read into no buffer), then the bytes.</summary>
    private static unsafe byte[] Read(int serial)
    {
        var length = Keyctl(KeyctlRead, serial, null, 0);
        if (length > 0)
        {
            var buffer = new byte[length];
            fixed (byte* p = buffer)
            {
                var got = Keyctl(KeyctlRead, serial, p, length);
                if (got >= 0)
                {
                    return buffer.AsSpan(0, (int)Math.Min(got, length)).ToArray();
                }
            }
        }

        var errno = length == 0 ? 0 : Marshal.GetLastPInvokeError();
        throw BlockException.Invalid($"Unable to read serial key {serial:x8}: {Native.LibC.StrError(errno)}");
    }

    private static unsafe long Keyctl(long command, long serial, byte* buffer, long length) =>
        Syscall(RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? 219 : 250, command, serial, buffer, length);

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static unsafe partial long Syscall(long number, long command, long serial, byte* buffer, long length);
}
