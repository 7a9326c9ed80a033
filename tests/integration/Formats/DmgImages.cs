using ExportServer.IntegrationTests.Support;

namespace ExportServer.IntegrationTests.Formats;

/// <summary>
/// dmg (UDIF) fixtures, which qemu-img cannot write: a python3 script lays out chunks of the given
/// types and sizes (random, half-repeated and text contents) in two mish blocks, the second with its
/// own first sector and data offset, listed in an XML property list or a resource fork, then the
/// koly trailer; it writes the disk's bytes beside the image.
/// </summary>
internal static class DmgImages
{
    private const string Script = """
import base64, bz2, plistlib, random, struct, sys, zlib
# usage: mkdmg.py OUT.dmg OUT.raw xml|rsrc SEED TYPE:SECTORS...
out, raw_out, table, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
specs = [(s.split(':')[0], int(s.split(':')[1])) for s in sys.argv[5:]]
rnd = random.Random(seed)
codes = {'zero': 0, 'raw': 1, 'ignore': 2, 'adc': 0x80000004, 'zlib': 0x80000005, 'bzip2': 0x80000006, 'lzfse': 0x80000007}

def content(n, i):
    kind = i % 3
    if kind == 0:
        return bytes(rnd.getrandbits(8) for _ in range(n))
    if kind == 1:
        return bytes([i * 7 % 256]) * (n // 2) + bytes(rnd.getrandbits(8) for _ in range(n - n // 2))
    return ((b'dmg chunk %d ' % i) * (n // 8 + 1))[:n]

disk, data, rows_per_block = bytearray(), bytearray(), []
# Two mish blocks, split in the middle: the second has its own first sector and data offset.
split = max(1, len(specs) // 2)
for b, part in enumerate([specs[:split], specs[split:]]):
    if not part:
        continue
    first_sector, data_offset, rows = len(disk) // 512, len(data), []
    for i, (kind, sectors) in enumerate(part):
        n = sectors * 512
        if kind in ('zero', 'ignore'):
            plain, stored = bytes(n), b''
        else:
            plain = content(n, len(disk) // 512 + i)
            stored = {'raw': lambda p: p, 'zlib': zlib.compress, 'bzip2': bz2.compress}.get(kind, lambda p: p[:100])(plain)
        rows.append(struct.pack('>IIQQQQ', codes[kind], 0, len(disk) // 512 - first_sector, sectors, len(data) - data_offset, len(stored)))
        disk += plain
        data += stored
    rows.append(struct.pack('>IIQQQQ', 0xffffffff, 0, len(disk) // 512 - first_sector, 0, len(data) - data_offset, 0))
    head = struct.pack('>IIQQQII', 0x6d697368, 1, first_sector, len(disk) // 512 - first_sector, data_offset, 0, b)
    head += bytes(24) + bytes(136) + struct.pack('>I', len(rows))
    assert len(head) == 204
    rows_per_block.append(head + b''.join(rows))

image = bytearray(data)
xml_offset = xml_length = rsrc_offset = rsrc_length = 0
if table == 'xml':
    plist = {'resource-fork': {'blkx': [{'Attributes': '0x0050', 'Data': m, 'ID': str(i), 'Name': 'part %d' % i} for i, m in enumerate(rows_per_block)]}}
    xml = plistlib.dumps(plist)
    xml_offset, xml_length = len(image), len(xml)
    image += xml
else:
    resources = b''.join(struct.pack('>I', len(m)) + m for m in rows_per_block)
    fork = struct.pack('>IIII', 256, 0, len(resources), 0) + bytes(240) + resources
    rsrc_offset, rsrc_length = len(image), len(fork)
    image += fork

koly = bytearray(512)
struct.pack_into('>4sIII', koly, 0, b'koly', 4, 512, 1)
struct.pack_into('>QQQQ', koly, 0x18, 0, len(data), rsrc_offset, rsrc_length)
struct.pack_into('>QQ', koly, 0xd8, xml_offset, xml_length)
struct.pack_into('>II', koly, 0x1e8, 1, 0)
struct.pack_into('>Q', koly, 0x1ec, len(disk) // 512)
image += koly
open(out, 'wb').write(image)
open(raw_out, 'wb').write(disk)
""";

    /// <summary>Writes <paramref name="image"/> and the disk it holds, <paramref name="raw"/>; <paramref name="chunks"/> as "type:sectors" (zero, raw, ignore, zlib, bzip2, adc, lzfse).</summary>
    public static async Task WriteAsync(TempDir dir, string image, string raw, string table, int seed, params string[] chunks)
    {
        var script = dir["mkdmg.py"];
        await File.WriteAllTextAsync(script, Script);
        (await Tool.RunAsync("/usr/bin/python3", [script, image, raw, table, seed.ToString(System.Globalization.CultureInfo.InvariantCulture), .. chunks],
            TimeSpan.FromSeconds(60))).Check("mkdmg.py");
    }
}
