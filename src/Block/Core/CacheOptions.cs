namespace ExportServer.Block.Core;

/// <summary>QEMU's 'cache' options: direct = O_DIRECT, no-flush = flushes are dropped.</summary>
public readonly record struct CacheOptions(bool Direct, bool NoFlush);
