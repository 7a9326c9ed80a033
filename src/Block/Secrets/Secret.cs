namespace ExportServer.Block.Secrets;

/// <summary>
/// A <c>secret</c> object's value: the bytes it holds once loaded (decoded and decrypted). The value
/// is never printed: <see cref="ToString"/> names only the id, so a secret cannot reach a log or a
/// reply by accident.
/// </summary>
public sealed class Secret
{
    private readonly byte[] _data;

    public Secret(string id, byte[] data)
    {
        Id = id;
        _data = data;
    }

    public string Id { get; }

    /// <summary>A copy of the value; callers clear it when they are done with it.</summary>
    public byte[] CopyData() => (byte[])_data.Clone();

    public int Length => _data.Length;

    public override string ToString() => $"secret '{Id}'";
}
