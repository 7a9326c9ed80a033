using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Security.Cryptography;

namespace ExportServer.Block.Formats.Luks;

/// <summary>
/// Encrypts and decrypts whole sectors with a LUKS cipher: AES in XTS, CBC or ECB mode, each sector's
/// IV made from its number (plain, plain64, ESSIV). XTS is built over AES-ECB: the tweaks of a run of
/// sectors are computed first (one ECB call for their initial values, then doubling in GF(2^128)),
/// and the data is whitened, encrypted in one ECB call and whitened again, so a request costs two
/// library calls per chunk rather than one per block.
/// </summary>
internal sealed class LuksSectorCipher : IDisposable
{
    private const int Block = 16;

    /// <summary>Sectors handled per pass: the data, tweaks and scratch of a pass stay in the cache.</summary>
    private const int ChunkBytes = 64 * 1024;

    private readonly LuksCipherSpec _spec;
    private readonly int _sectorSize;
    private readonly AesPool _data;
    private readonly AesPool? _tweak;
    private readonly AesPool? _essiv;

    public LuksSectorCipher(LuksCipherSpec spec, ReadOnlySpan<byte> masterKey, int sectorSize = LuksFormat.SectorSize)
    {
        _spec = spec;
        _sectorSize = sectorSize;
        if (spec.Mode == LuksCipherMode.Xts)
        {
            _data = new AesPool(masterKey[..spec.AesKeyBytes]);
            _tweak = new AesPool(masterKey[spec.AesKeyBytes..]);
        }
        else
        {
            _data = new AesPool(masterKey);
        }

        if (spec.IvGen == LuksIvGen.Essiv)
        {
            Span<byte> salt = stackalloc byte[spec.IvHash!.Length];
            spec.IvHash.Hash(masterKey, salt);
            _essiv = new AesPool(salt);
            CryptographicOperations.ZeroMemory(salt);
        }
    }

    public int SectorSize => _sectorSize;

    /// <summary>Encrypts <paramref name="data"/> (whole sectors) in place; its first sector has number <paramref name="sector"/>.</summary>
    public void Encrypt(long sector, Span<byte> data) => Run(sector, data, encrypt: true);

    public void Decrypt(long sector, Span<byte> data) => Run(sector, data, encrypt: false);

    private void Run(long sector, Span<byte> data, bool encrypt)
    {
        var chunk = Math.Max(ChunkBytes / _sectorSize, 1) * _sectorSize;
        var scratch = ArrayPool<byte>.Shared.Rent(Math.Min(chunk, data.Length) * 2);
        try
        {
            while (data.Length > 0)
            {
                var n = Math.Min(chunk, data.Length);
                var part = data[..n];
                var first = scratch.AsSpan(0, n);
                var second = scratch.AsSpan(n, n);
                switch (_spec.Mode)
                {
                    case LuksCipherMode.Xts:
                        Xts(sector, part, first, second, encrypt);
                        break;
                    case LuksCipherMode.Cbc when encrypt:
                        CbcEncrypt(sector, part, first);
                        break;
                    case LuksCipherMode.Cbc:
                        CbcDecrypt(sector, part, first);
                        break;
                    default:
                        part.CopyTo(first);
                        _data.Ecb(first, part, encrypt);
                        break;
                }

                sector += n / _sectorSize;
                data = data[n..];
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch, clearArray: true);
        }
    }

    /// <summary>
    /// The IVs of <paramref name="ivs"/>.Length / 16 sectors from <paramref name="sector"/> on. As dm-crypt
    /// does without iv_large_sectors (and LUKS2 never sets it), an IV counts 512-byte units, so the IVs of
    /// 4096-byte sectors go 0, 8, 16, ….
    /// </summary>
    private void MakeIvs(long sector, Span<byte> ivs)
    {
        ivs.Clear();
        var step = _sectorSize / LuksFormat.SectorSize;
        for (var i = 0; i < ivs.Length / Block; i++)
        {
            var s = (sector + i) * step;
            if (_spec.IvGen == LuksIvGen.Plain)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(ivs[(i * Block)..], (uint)s);
            }
            else
            {
                BinaryPrimitives.WriteInt64LittleEndian(ivs[(i * Block)..], s);
            }
        }

        if (_essiv is not null)
        {
            var copy = ArrayPool<byte>.Shared.Rent(ivs.Length);
            try
            {
                ivs.CopyTo(copy);
                _essiv.Ecb(copy.AsSpan(0, ivs.Length), ivs, encrypt: true);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(copy);
            }
        }
    }

    /// <summary>
    /// XTS over whole sectors: <paramref name="tweaks"/> gets each block's tweak, <paramref name="work"/>
    /// the whitened data, which one ECB call turns back into <paramref name="data"/>, whitened again.
    /// </summary>
    private void Xts(long sector, Span<byte> data, Span<byte> tweaks, Span<byte> work, bool encrypt)
    {
        var sectors = data.Length / _sectorSize;
        var ivBytes = sectors * Block;

        // The initial tweak of each sector: its IV encrypted with the second key, kept at the sector's first block.
        MakeIvs(sector, work[..ivBytes]);
        _tweak!.Ecb(work[..ivBytes], tweaks[..ivBytes], encrypt: true);
        var lanes = MemoryMarshal.Cast<byte, ulong>(tweaks);
        var perSector = _sectorSize / Block;
        for (var s = sectors - 1; s >= 0; s--)
        {
            var lo = lanes[s * 2];
            var hi = lanes[(s * 2) + 1];
            var at = s * perSector * 2;
            for (var j = 0; j < perSector; j++)
            {
                lanes[at + (j * 2)] = lo;
                lanes[at + (j * 2) + 1] = hi;
                var carry = (ulong)((long)hi >> 63) & 0x87;
                hi = (hi << 1) | (lo >> 63);
                lo = (lo << 1) ^ carry;
            }
        }

        Xor(data, tweaks, work);
        _data.Ecb(work, data, encrypt);

        Xor(data, tweaks, data);
    }

    private void CbcEncrypt(long sector, Span<byte> data, Span<byte> work)
    {
        var sectors = data.Length / _sectorSize;
        var ivBuffer = ArrayPool<byte>.Shared.Rent(sectors * Block);
        var aes = _data.Rent();
        try
        {
            var all = ivBuffer.AsSpan(0, sectors * Block);
            MakeIvs(sector, all);
            data.CopyTo(work);
            for (var s = 0; s < sectors; s++)
            {
                aes.EncryptCbc(work.Slice(s * _sectorSize, _sectorSize), all.Slice(s * Block, Block), data.Slice(s * _sectorSize, _sectorSize), PaddingMode.None);
            }
        }
        finally
        {
            _data.Return(aes);
            ArrayPool<byte>.Shared.Return(ivBuffer);
        }
    }

    /// <summary>CBC decryption of many sectors at once: one ECB call, then each block XORed with the ciphertext before it (or the IV).</summary>
    private void CbcDecrypt(long sector, Span<byte> data, Span<byte> work)
    {
        var sectors = data.Length / _sectorSize;
        var ivBuffer = ArrayPool<byte>.Shared.Rent(sectors * Block);
        try
        {
            var ivs = ivBuffer.AsSpan(0, sectors * Block);
            MakeIvs(sector, ivs);
            _data.Ecb(data, work, encrypt: false);
            for (var s = sectors - 1; s >= 0; s--)
            {
                var c = data.Slice(s * _sectorSize, _sectorSize);
                var d = work.Slice(s * _sectorSize, _sectorSize);
                Xor(d[Block..], c[..^Block], c[Block..]);
                Xor(d[..Block], ivs.Slice(s * Block, Block), c[..Block]);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(ivBuffer);
        }
    }

    /// <summary><paramref name="into"/> = <paramref name="a"/> ^ <paramref name="b"/>; <paramref name="into"/> may be <paramref name="a"/>, or
    /// start after <paramref name="b"/> when both lie in one buffer (CBC's shifted XOR), so it runs from the end.</summary>
    private static void Xor(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, Span<byte> into)
    {
        var n = into.Length;
        var i = n;
        if (Vector256.IsHardwareAccelerated)
        {
            while (i >= Vector256<byte>.Count)
            {
                i -= Vector256<byte>.Count;
                (Vector256.Create(a[i..]) ^ Vector256.Create(b[i..])).CopyTo(into[i..]);
            }
        }

        while (i >= 8)
        {
            i -= 8;
            BinaryPrimitives.WriteUInt64LittleEndian(into[i..], BinaryPrimitives.ReadUInt64LittleEndian(a[i..]) ^ BinaryPrimitives.ReadUInt64LittleEndian(b[i..]));
        }

        while (i > 0)
        {
            i--;
            into[i] = (byte)(a[i] ^ b[i]);
        }
    }

    public void Dispose()
    {
        _data.Dispose();
        _tweak?.Dispose();
        _essiv?.Dispose();
    }
}
