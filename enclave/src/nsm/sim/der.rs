//! Just enough DER to check the simulator's persisted root certificate.
//!
//! The enclave has no X.509 parser among its dependencies (rcgen only writes
//! certificates), and the simulator needs only a few fields of certificates it wrote
//! itself: the to-be-signed bytes, the issuer and subject names, the public key and the
//! signature. Those sit at fixed positions in every certificate, so a strict reader of
//! definite-length TLVs is enough, and anything it does not understand is an error.

/// The raw parts of an X.509 certificate that the simulator checks.
pub(super) struct CertParts<'a> {
    /// The complete `tbsCertificate` TLV: the bytes the issuer signed.
    pub tbs: &'a [u8],
    /// The complete `issuer` Name TLV.
    pub issuer: &'a [u8],
    /// The complete `subject` Name TLV.
    pub subject: &'a [u8],
    /// The complete `subjectPublicKeyInfo` TLV.
    pub spki: &'a [u8],
    /// The outer `signatureAlgorithm` TLV.
    pub signature_algorithm: &'a [u8],
    /// The signature BIT STRING's bytes (after the unused-bits octet).
    pub signature: &'a [u8],
}

/// `AlgorithmIdentifier { ecdsa-with-SHA384 }`, parameters absent (RFC 5758).
pub(super) const ECDSA_WITH_SHA384: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const VERSION: u8 = 0xa0;

struct Tlv<'a> {
    tag: u8,
    /// Header and content.
    raw: &'a [u8],
    content: &'a [u8],
}

/// Reads one TLV from the front of `input`; returns it and what follows.
fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    let (&tag, rest) = input.split_first().ok_or("truncated: missing tag")?;
    if tag & 0x1f == 0x1f {
        return Err(format!("unsupported high tag number form {tag:#04x}"));
    }
    let (&first, mut rest) = rest.split_first().ok_or("truncated: missing length")?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 {
            return Err("indefinite length is not DER".into());
        }
        if n > 4 {
            return Err(format!("length of {n} octets is too long"));
        }
        if rest.len() < n {
            return Err("truncated: length octets".into());
        }
        let (octets, after) = rest.split_at(n);
        rest = after;
        let len = octets
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len < 0x80 || octets[0] == 0 {
            return Err("non-minimal length encoding".into());
        }
        len
    };
    if rest.len() < len {
        return Err(format!(
            "truncated: tag {tag:#04x} needs {len} bytes, {} left",
            rest.len()
        ));
    }
    let header_len = input.len() - rest.len();
    let (content, after) = rest.split_at(len);
    Ok((
        Tlv {
            tag,
            raw: &input[..header_len + len],
            content,
        },
        after,
    ))
}

fn expect<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(Tlv<'a>, &'a [u8]), String> {
    let (tlv, rest) = read_tlv(input).map_err(|e| format!("{what}: {e}"))?;
    if tlv.tag != tag {
        return Err(format!(
            "{what}: expected tag {tag:#04x}, found {:#04x}",
            tlv.tag
        ));
    }
    Ok((tlv, rest))
}

/// Splits a DER certificate into the parts [`CertParts`] names. Trailing bytes after the
/// certificate are an error.
pub(super) fn parse_certificate(der: &[u8]) -> Result<CertParts<'_>, String> {
    let (cert, trailing) = expect(der, SEQUENCE, "Certificate")?;
    if !trailing.is_empty() {
        return Err(format!(
            "{} trailing bytes after the certificate",
            trailing.len()
        ));
    }
    let (tbs, rest) = expect(cert.content, SEQUENCE, "tbsCertificate")?;
    let (signature_algorithm, rest) = expect(rest, SEQUENCE, "signatureAlgorithm")?;
    let (signature, rest) = expect(rest, BIT_STRING, "signatureValue")?;
    if !rest.is_empty() {
        return Err("extra fields after signatureValue".into());
    }
    let signature = match signature.content.split_first() {
        Some((0, bits)) => bits,
        _ => return Err("signatureValue: not a whole number of octets".into()),
    };

    let mut fields = tbs.content;
    if fields.first() == Some(&VERSION) {
        fields = expect(fields, VERSION, "version")?.1;
    }
    let (_serial, fields) = expect(fields, INTEGER, "serialNumber")?;
    let (_sig_alg, fields) = expect(fields, SEQUENCE, "signature")?;
    let (issuer, fields) = expect(fields, SEQUENCE, "issuer")?;
    let (_validity, fields) = expect(fields, SEQUENCE, "validity")?;
    let (subject, fields) = expect(fields, SEQUENCE, "subject")?;
    let (spki, _extensions) = expect(fields, SEQUENCE, "subjectPublicKeyInfo")?;

    Ok(CertParts {
        tbs: tbs.raw,
        issuer: issuer.raw,
        subject: subject.raw,
        spki: spki.raw,
        signature_algorithm: signature_algorithm.raw,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_malformed_lengths() {
        // Indefinite length.
        assert!(read_tlv(&[0x30, 0x80, 0x00, 0x00]).is_err());
        // Long form for a short length.
        assert!(read_tlv(&[0x04, 0x81, 0x01, 0xff]).is_err());
        // Content shorter than the length says.
        assert!(read_tlv(&[0x04, 0x03, 0x01]).is_err());
        // Empty input.
        assert!(read_tlv(&[]).is_err());
    }

    #[test]
    fn reads_long_form_lengths() {
        let mut der = vec![0x04, 0x81, 0x80];
        der.extend(std::iter::repeat_n(7u8, 0x80));
        der.push(0xaa);
        let (tlv, rest) = read_tlv(&der).expect("valid TLV");
        assert_eq!(tlv.content.len(), 0x80);
        assert_eq!(tlv.raw.len(), 0x83);
        assert_eq!(rest, &[0xaa]);
    }

    #[test]
    fn rejects_non_certificates() {
        assert!(parse_certificate(&[]).is_err());
        assert!(parse_certificate(&[0x30, 0x00]).is_err());
        assert!(parse_certificate(b"-----BEGIN CERTIFICATE-----").is_err());
    }
}
