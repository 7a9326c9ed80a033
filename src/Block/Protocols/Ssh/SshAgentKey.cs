using Renci.SshNet;
using Renci.SshNet.Security;

namespace ExportServer.Block.Protocols.Ssh;

/// <summary>
/// One signature algorithm of a key the agent holds, as SSH.NET's public-key authentication sees a
/// host algorithm: the name and public blob it offers the server, and a signature the agent makes.
/// </summary>
internal sealed class SshAgentKey : HostAlgorithm
{
    private readonly SshAgentClient _agent;
    private readonly byte[] _keyBlob;
    private readonly uint _flags;

    private SshAgentKey(SshAgentClient agent, string name, byte[] keyBlob, uint flags)
        : base(name)
    {
        _agent = agent;
        _keyBlob = keyBlob;
        _flags = flags;
    }

    public override byte[] Data => _keyBlob;

    public override byte[] Sign(byte[] data) => _agent.Sign(_keyBlob, data, _flags);

    /// <summary>Only the server verifies a client's signature.</summary>
    public override bool VerifySignature(byte[] data, byte[] signature) => throw new NotSupportedException();

    /// <summary>
    /// Every identity of the agent as a key source. An RSA key is offered with its SHA-2 signatures
    /// first (RFC 8332), as OpenSSH's client does, then with the SHA-1 one that old servers know.
    /// </summary>
    public static IPrivateKeySource[] Identities(SshAgentClient agent)
    {
        var sources = new List<IPrivateKeySource>();
        foreach (var (blob, _) in agent.ListIdentities())
        {
            var type = SshAgentClient.KeyType(blob);
            HostAlgorithm[] algorithms = type == "ssh-rsa"
                ?
                [
                    new SshAgentKey(agent, "rsa-sha2-512", blob, SshAgentClient.RsaSha2_512),
                    new SshAgentKey(agent, "rsa-sha2-256", blob, SshAgentClient.RsaSha2_256),
                    new SshAgentKey(agent, "ssh-rsa", blob, 0),
                ]
                : [new SshAgentKey(agent, type, blob, 0)];
            sources.Add(new Source(algorithms));
        }

        return [.. sources];
    }

    private sealed class Source(IReadOnlyCollection<HostAlgorithm> algorithms) : IPrivateKeySource
    {
        public IReadOnlyCollection<HostAlgorithm> HostKeyAlgorithms { get; } = algorithms;
    }
}
