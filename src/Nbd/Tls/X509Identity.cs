using System.Formats.Asn1;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace ExportServer.Nbd.Tls;

/// <summary>
/// A certificate's subject as the string authorization rules match: RFC 4514 order (last RDN first),
/// short attribute names, commas without spaces, as GnuTLS prints it for QEMU (<c>CN=client,O=Example,C=GB</c>).
/// </summary>
internal static class X509Identity
{
    private static readonly Dictionary<string, string> s_shortNames = new(StringComparer.Ordinal)
    {
        ["2.5.4.3"] = "CN",
        ["2.5.4.6"] = "C",
        ["2.5.4.7"] = "L",
        ["2.5.4.8"] = "ST",
        ["2.5.4.9"] = "STREET",
        ["2.5.4.10"] = "O",
        ["2.5.4.11"] = "OU",
        ["2.5.4.12"] = "title",
        ["2.5.4.5"] = "serialNumber",
        ["0.9.2342.19200300.100.1.25"] = "DC",
        ["0.9.2342.19200300.100.1.1"] = "UID",
        ["1.2.840.113549.1.9.1"] = "EMAIL",
    };

    public static string DistinguishedName(X509Certificate2 certificate)
    {
        var sb = new StringBuilder();
        foreach (var rdn in certificate.SubjectName.EnumerateRelativeDistinguishedNames(reversed: true))
        {
            if (sb.Length > 0)
            {
                sb.Append(',');
            }

            if (rdn.HasMultipleElements)
            {
                // A rare multi-valued RDN: .NET's rendering of it alone ("CN=a + O=b").
                var writer = new AsnWriter(AsnEncodingRules.DER);
                using (writer.PushSequence())
                {
                    writer.WriteEncodedValue(rdn.RawData.Span);
                }

                sb.Append(new X500DistinguishedName(writer.Encode()).Name);
                continue;
            }

            var oid = rdn.GetSingleElementType().Value ?? string.Empty;
            sb.Append(s_shortNames.GetValueOrDefault(oid, oid)).Append('=');
            Escape(sb, rdn.GetSingleElementValue() ?? string.Empty);
        }

        return sb.ToString();
    }

    private static void Escape(StringBuilder sb, string value)
    {
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            var special = c is ',' or '+' or '"' or '\\' or '<' or '>' or ';'
                || (i == 0 && c is '#' or ' ')
                || (i == value.Length - 1 && c == ' ');
            if (special)
            {
                sb.Append('\\');
            }

            sb.Append(c);
        }
    }
}
