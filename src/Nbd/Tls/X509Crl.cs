using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ExportServer.Nbd.Tls;

/// <summary>
/// The revoked serial numbers of <c>ca-crl.pem</c> (one or more PEM CRLs), by issuer. The file is local
/// configuration beside the CA, so it is read as given: its signature is not checked again here.
/// </summary>
internal sealed class X509Crl
{
    private readonly HashSet<(string Issuer, string Serial)> _revoked;

    private X509Crl(HashSet<(string, string)> revoked)
    {
        _revoked = revoked;
    }

    public bool IsRevoked(X509Certificate2 certificate) =>
        _revoked.Contains((Convert.ToHexString(certificate.IssuerName.RawData), certificate.SerialNumber));

    /// <summary>Parses the PEM text; throws <see cref="CryptographicException"/> or <see cref="AsnContentException"/> on a malformed one.</summary>
    public static X509Crl Parse(string pem)
    {
        var revoked = new HashSet<(string, string)>();
        var text = pem.AsSpan();
        var found = false;
        while (PemEncoding.TryFind(text, out var fields))
        {
            if (text[fields.Label].SequenceEqual("X509 CRL"))
            {
                found = true;
                Read(Convert.FromBase64String(text[fields.Base64Data].ToString()), revoked);
            }

            text = text[fields.Location.End..];
        }

        return found ? new X509Crl(revoked) : throw new CryptographicException("no X509 CRL in the file");
    }

    /// <summary>CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signature } (RFC 5280 5.1).</summary>
    private static void Read(byte[] der, HashSet<(string, string)> revoked)
    {
        var list = new AsnReader(der, AsnEncodingRules.DER).ReadSequence();
        var tbs = list.ReadSequence();
        if (tbs.PeekTag().HasSameClassAndValue(Asn1Tag.Integer))
        {
            tbs.ReadInteger();
        }

        tbs.ReadSequence();
        var issuer = Convert.ToHexString(tbs.ReadEncodedValue().Span);
        tbs.ReadEncodedValue();
        if (tbs.HasData && (tbs.PeekTag().HasSameClassAndValue(Asn1Tag.UtcTime) || tbs.PeekTag().HasSameClassAndValue(Asn1Tag.GeneralizedTime)))
        {
            tbs.ReadEncodedValue();
        }

        if (!tbs.HasData || !tbs.PeekTag().HasSameClassAndValue(Asn1Tag.Sequence))
        {
            return;
        }

        var entries = tbs.ReadSequence();
        while (entries.HasData)
        {
            var entry = entries.ReadSequence();
            var serial = entry.ReadIntegerBytes().Span;
            revoked.Add((issuer, Convert.ToHexString(serial)));
        }
    }
}
