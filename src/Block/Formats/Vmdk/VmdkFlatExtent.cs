using ExportServer.Block.Core;

namespace ExportServer.Block.Formats.Vmdk;

/// <summary>A FLAT or VMFS extent: the extent's bytes as they are, from a sector offset of its file on.</summary>
internal sealed class VmdkFlatExtent : VmdkExtent
{
    private readonly long _fileOffset;

    public VmdkFlatExtent(BlockNode file, long start, long length, string type, long fileOffset)
        : base(file, start, length, type)
    {
        _fileOffset = fileOffset;
        if (fileOffset + length > file.Length)
        {
            throw BlockException.Invalid(
                $"vmdk: {type} extent '{file.FileName}' ({length / VmdkFormat.SectorSize} sectors from sector {fileOffset / VmdkFormat.SectorSize}) reaches beyond the end of its file ({file.Length} bytes)");
        }
    }

    public override bool IsFlat => true;

    public override ValueTask<VmdkGrain> MapAsync(long offset, long length) =>
        ValueTask.FromResult(new VmdkGrain(VmdkGrainKind.Data, length, _fileOffset + offset));
}
