namespace ExportServer.Nbd.Protocol;

/// <summary>Outcome of a TryParse over received bytes.</summary>
internal enum NbdParseStatus
{
    /// <summary>More bytes are needed; nothing was consumed.</summary>
    Incomplete,

    /// <summary>A message was parsed.</summary>
    Ok,

    /// <summary>The bytes are not a message of the expected kind (wrong magic): framing is lost.</summary>
    BadMagic,
}
