//! Certificate subjects: the distinguished name that a user's `certificate_subject` names and
//! that a TLS client certificate carries, read into one comparable form. Users write the name
//! as RFC 4514 text, the form `openssl x509 -noout -subject -nameopt RFC2253` prints (most
//! specific RDN first, `,` between RDNs, `+` inside a multi-valued RDN); the certificate's
//! subject is read from its DER with x509-parser. `users.rs` parses the config side once per
//! load, `shard/accept.rs` the certificate side once per TLS handshake.
//!
//! What is compared (docs/security.md, "Certificate logins"): the RDNs in order; within an
//! RDN the attribute type and value pairs as a set (their order does not matter). An attribute
//! type is its OID: a short name (`CN`, `O`, `OU`, `C`, `L`, `ST`, `DC`, `UID`, `emailAddress`…,
//! any case), a long name (`commonName`) or a dotted OID (`2.5.4.3`, `OID.2.5.4.3`) name the
//! same type. A value is compared exactly, character for character (case and inner spaces
//! matter), after its escapes are undone: `\,` and `\2C` are the same comma, and `\C3\A9` is
//! `é`. A value in any of X.520's string types is its text, whichever string type encodes it;
//! any other value is its DER encoding, RFC 4514's `#` + hex form (a `#` + hex form that
//! encodes a string stands for that text). Unescaped spaces around types and values are
//! ignored.

use std::fmt;
use std::hash::{Hash, Hasher};

use x509_parser::asn1_rs::{Any, Class, FromDer, Tag, ToDer};
use x509_parser::prelude::{X509Certificate, X509Name};

/// A distinguished name, its RDNs most specific first as RFC 4514 writes them. Equal when
/// the names are the same (see the module documentation); displayed as openssl's
/// `-nameopt RFC2253` prints it.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Most specific RDN first; within an RDN, the attributes in the order displayed.
    rdns: Vec<Vec<Attribute>>,
}

/// One attribute type and value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Attribute {
    /// The attribute type's OID, dotted (`2.5.4.3`).
    oid: String,
    value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Value {
    /// A string of any of X.520's string types, as Unicode.
    Text(String),
    /// Anything else: the whole DER encoding (tag, length, content).
    Der(Vec<u8>),
}

impl Subject {
    /// Reads RFC 4514 text (`CN=orders-svc,O=Example Corp`); the error says what is wrong
    /// and where.
    pub fn parse(text: &str) -> Result<Subject, String> {
        if text.trim().is_empty() {
            return Err("empty".into());
        }
        let mut rdns = Vec::new();
        let mut rdn = Vec::new();
        let mut rest = text.as_bytes();
        loop {
            let (attribute, separator, after) = attribute(text, rest)?;
            rdn.push(attribute);
            match separator {
                Some(b'+') => {}
                Some(_) => rdns.push(std::mem::take(&mut rdn)),
                None => {
                    rdns.push(rdn);
                    break;
                }
            }
            rest = after;
        }
        Ok(Subject { rdns })
    }

    /// The subject of a DER certificate.
    pub fn of_certificate(der: &[u8]) -> Result<Subject, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        Ok(Subject::of_name(cert.subject()))
    }

    fn of_name(name: &X509Name<'_>) -> Subject {
        // The certificate holds the least specific RDN first; RFC 4514 text the most specific.
        let mut rdns: Vec<Vec<Attribute>> = name
            .iter_rdn()
            .map(|rdn| {
                rdn.iter()
                    .map(|a| Attribute {
                        oid: a.attr_type().to_id_string(),
                        value: value_of(a.attr_value()),
                    })
                    .collect()
            })
            .collect();
        rdns.reverse();
        // openssl prints an RDN's attributes in the reverse of their encoded order too.
        for rdn in &mut rdns {
            rdn.reverse();
        }
        Subject { rdns }
    }

    /// What equality and hashing look at: the RDNs in order, each one's attributes sorted.
    fn key(&self) -> Vec<Vec<&Attribute>> {
        self.rdns
            .iter()
            .map(|rdn| {
                let mut set: Vec<&Attribute> = rdn.iter().collect();
                set.sort();
                set
            })
            .collect()
    }
}

impl PartialEq for Subject {
    fn eq(&self, other: &Subject) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Subject {}

impl Hash for Subject {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl fmt::Display for Subject {
    /// RFC 4514 text as `openssl x509 -nameopt RFC2253` prints it: short names, `\` before
    /// `,+"\<>;`, before a leading `#` or space and a trailing space, and `\XX` for control
    /// characters and each byte of a non-ASCII character.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rdn) in self.rdns.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            for (j, a) in rdn.iter().enumerate() {
                if j > 0 {
                    f.write_str("+")?;
                }
                let name = TYPES
                    .iter()
                    .find(|t| t.oid == a.oid)
                    .map_or(a.oid.as_str(), |t| t.name);
                write!(f, "{name}=")?;
                match &a.value {
                    Value::Text(s) => escape(s, f)?,
                    Value::Der(der) => {
                        f.write_str("#")?;
                        for b in der {
                            write!(f, "{b:02X}")?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// An attribute type: its OID, the short name printed, and other names accepted.
struct Type {
    oid: &'static str,
    name: &'static str,
    aliases: &'static [&'static str],
}

/// The attribute types with a name: openssl's short names (what `-nameopt RFC2253` prints)
/// for X.520's and the few others certificates use. Others are written as dotted OIDs.
const TYPES: &[Type] = &[
    t("2.5.4.3", "CN", &["commonName"]),
    t("2.5.4.4", "SN", &["surname"]),
    t("2.5.4.5", "serialNumber", &[]),
    t("2.5.4.6", "C", &["countryName"]),
    t("2.5.4.7", "L", &["localityName"]),
    t("2.5.4.8", "ST", &["stateOrProvinceName", "S"]),
    t("2.5.4.9", "street", &["streetAddress"]),
    t("2.5.4.10", "O", &["organizationName"]),
    t("2.5.4.11", "OU", &["organizationalUnitName"]),
    t("2.5.4.12", "title", &[]),
    t("2.5.4.13", "description", &[]),
    t("2.5.4.15", "businessCategory", &[]),
    t("2.5.4.17", "postalCode", &[]),
    t("2.5.4.41", "name", &[]),
    t("2.5.4.42", "GN", &["givenName"]),
    t("2.5.4.43", "initials", &[]),
    t("2.5.4.44", "generationQualifier", &[]),
    t("2.5.4.46", "dnQualifier", &[]),
    t("2.5.4.65", "pseudonym", &[]),
    t("2.5.4.97", "organizationIdentifier", &[]),
    t("0.9.2342.19200300.100.1.1", "UID", &["userId"]),
    t("0.9.2342.19200300.100.1.25", "DC", &["domainComponent"]),
    t("1.2.840.113549.1.9.1", "emailAddress", &["E", "email"]),
    t("1.3.6.1.4.1.311.60.2.1.1", "jurisdictionL", &[]),
    t("1.3.6.1.4.1.311.60.2.1.2", "jurisdictionST", &[]),
    t("1.3.6.1.4.1.311.60.2.1.3", "jurisdictionC", &[]),
];

const fn t(oid: &'static str, name: &'static str, aliases: &'static [&'static str]) -> Type {
    Type { oid, name, aliases }
}

/// Reads one `type=value` of `all` from `rest`: the attribute, the separator that ended it
/// (`,` or `+`; none at the end) and what follows it.
fn attribute<'a>(all: &str, rest: &'a [u8]) -> Result<(Attribute, Option<u8>, &'a [u8]), String> {
    let at = all.len() - rest.len();
    let Some(eq) = rest.iter().position(|&b| b == b'=') else {
        return Err(format!("expected type=value at {:?}", &all[at..]));
    };
    // Type names are ASCII, so the cut is on a character boundary.
    let name = all[at..at + eq].trim();
    let oid = oid_of(name)?;
    let mut i = eq + 1;
    while rest.get(i) == Some(&b' ') {
        i += 1;
    }
    let (bytes, end) = match rest.get(i) {
        Some(b'#') => {
            let start = i + 1;
            let mut end = start;
            while end < rest.len() && !matches!(rest[end], b',' | b'+') {
                end += 1;
            }
            let hex = std::str::from_utf8(&rest[start..end])
                .unwrap_or("")
                .trim_end();
            let der = unhex(hex).ok_or_else(|| format!("{name}: #{hex} is not hex"))?;
            let value = match Any::from_der(&der) {
                Ok(([], any)) => value_of(&any),
                _ => return Err(format!("{name}: #{hex} is not one DER value")),
            };
            return Ok((
                Attribute { oid, value },
                rest.get(end).copied(),
                tail(rest, end),
            ));
        }
        _ => string(name, rest, i)?,
    };
    let text = String::from_utf8(bytes).map_err(|_| format!("{name}: value is not UTF-8"))?;
    let attribute = Attribute {
        oid,
        value: Value::Text(text),
    };
    Ok((attribute, rest.get(end).copied(), tail(rest, end)))
}

/// What follows the separator at `end` (nothing when `end` is the end).
fn tail(rest: &[u8], end: usize) -> &[u8] {
    rest.get(end + 1..).unwrap_or(&[])
}

/// Reads a string value from `rest[i..]` up to an unescaped `,` or `+` (or the end): its
/// bytes with escapes undone and unescaped trailing spaces dropped, and where it ended.
fn string(name: &str, rest: &[u8], mut i: usize) -> Result<(Vec<u8>, usize), String> {
    let mut bytes = Vec::new();
    // The length without the unescaped spaces at the end.
    let mut kept = 0;
    while let Some(&b) = rest.get(i) {
        match b {
            b',' | b'+' => break,
            b'\\' => {
                let hex = rest
                    .get(i + 1..i + 3)
                    .and_then(|h| unhex(std::str::from_utf8(h).ok()?));
                match (hex, rest.get(i + 1)) {
                    (Some(h), _) => {
                        bytes.extend(h);
                        i += 3;
                    }
                    (None, Some(&c)) if b" \"#+,;<=>\\".contains(&c) => {
                        bytes.push(c);
                        i += 2;
                    }
                    _ => {
                        return Err(format!(
                        "{name}: a \\ must be followed by one of \" #+,;<=>\\ or two hex digits"
                    ))
                    }
                }
                kept = bytes.len();
            }
            b'"' | b';' | b'<' | b'>' => {
                return Err(format!("{name}: write {:?} as \\{}", b as char, b as char));
            }
            _ => {
                bytes.push(b);
                if b != b' ' {
                    kept = bytes.len();
                }
                i += 1;
            }
        }
    }
    bytes.truncate(kept);
    Ok((bytes, i))
}

/// The OID a type name stands for.
fn oid_of(name: &str) -> Result<String, String> {
    let dotted = name
        .strip_prefix("OID.")
        .or_else(|| name.strip_prefix("oid."))
        .unwrap_or(name);
    if dotted.starts_with(|c: char| c.is_ascii_digit()) {
        let arcs: Vec<&str> = dotted.split('.').collect();
        let numeric = arcs
            .iter()
            .all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()));
        return match numeric && arcs.len() >= 2 {
            true => Ok(arcs.join(".")),
            false => Err(format!("{name:?} is not an OID")),
        };
    }
    TYPES
        .iter()
        .find(|t| {
            t.name.eq_ignore_ascii_case(name)
                || t.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
        .map(|t| t.oid.to_string())
        .ok_or_else(|| {
            if name.is_empty() {
                "an attribute without a type".to_string()
            } else {
                format!("unknown attribute type {name:?} (write its OID, e.g. 2.5.4.3=…)")
            }
        })
}

/// A value as compared: the text of a string type, else the DER.
fn value_of(any: &Any<'_>) -> Value {
    match text_of(any) {
        Some(text) => Value::Text(text),
        None => Value::Der(any.to_der_vec().unwrap_or_default()),
    }
}

/// The text of X.520's string types (DirectoryString and the IA5String of emailAddress and
/// DC); TeletexString read as Latin-1, as openssl does.
fn text_of(any: &Any<'_>) -> Option<String> {
    if any.class() != Class::Universal || any.header.is_constructed() {
        return None;
    }
    let data = any.data;
    match any.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => String::from_utf8(data.to_vec()).ok(),
        Tag::TeletexString => Some(data.iter().map(|&b| b as char).collect()),
        Tag::BmpString if data.len().is_multiple_of(2) => {
            let units = data.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::UniversalString if data.len().is_multiple_of(4) => data
            .chunks(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

/// RFC 4514's escapes, as openssl's `esc_2253`, `esc_ctrl` and `esc_msb` write them.
fn escape(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let last = s.len().saturating_sub(1);
    for (i, c) in s.char_indices() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, ' ' | '#'))
            || (i == last && c == ' ');
        if special {
            write!(f, "\\{c}")?;
        } else if c.is_ascii_control() || !c.is_ascii() {
            let mut utf8 = [0u8; 4];
            for b in c.encode_utf8(&mut utf8).bytes() {
                write!(f, "\\{b:02X}")?;
            }
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

fn unhex(hex: &str) -> Option<Vec<u8>> {
    // Digits only: from_str_radix would take a sign (`\+1` is an escaped `+`, then `1`).
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    use super::*;

    /// Made with openssl 3.0: `openssl req -multivalue-rdn -utf8 -subj
    /// '/DC=com/DC=example/O=Example, Inc./OU=ops+UID=svc-7/CN=#orders\+ svc <é>;"q"\\ '`,
    /// signed by a throwaway CA.
    const FIXTURE: &str = "-----BEGIN CERTIFICATE-----
MIIBnzCCAUQCFDwbR+V59MGQJREX4P+XZPMWPe/GMAoGCCqGSM49BAMCMBUxEzAR
BgNVBAMMCmZpeHR1cmUgQ0EwIBcNMjYxMjA1MDEwMzM2WhgPMjEyNjExMTEwMTAz
MzZaMIGLMRMwEQYKCZImiZPyLGQBGRYDY29tMRcwFQYKCZImiZPyLGQBGRYHZXhh
bXBsZTEWMBQGA1UECgwNRXhhbXBsZSwgSW5jLjEhMAoGA1UECwwDb3BzMBMGCgmS
JomT8ixkAQEMBXN2Yy03MSAwHgYDVQQDDBcjb3JkZXJzKyBzdmMgPMOpPjsicSJc
IDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABH8XpoOcZU/Bt0D2JiJwIEk6NYMD
FGV1Jc0TTSSc9T0ADeKmpONyIN7FHCtL0Faav5AH7S+eZkn2stVjZIsiHGYwCgYI
KoZIzj0EAwIDSQAwRgIhAJOTKzGQPS+PXvfswlEA4nJQUu5oR4WBPjN91FZ5BFad
AiEAj+MhUHzPU5HGFnI28qVz/39V5UKwdcnzapFqLPSmfb8=
-----END CERTIFICATE-----
";

    /// What `openssl x509 -noout -subject -nameopt RFC2253` prints for [`FIXTURE`] (after
    /// `subject=`).
    const OPENSSL: &str = concat!(
        r#"CN=\#orders\+ svc \<\C3\A9\>\;\"q\"\\\ ,"#,
        r#"UID=svc-7+OU=ops,O=Example\, Inc.,DC=example,DC=com"#
    );

    fn fixture() -> Subject {
        let der = CertificateDer::from_pem_slice(FIXTURE.as_bytes()).unwrap();
        Subject::of_certificate(&der).unwrap()
    }

    fn parse(text: &str) -> Subject {
        Subject::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn a_certificate_subject_reads_and_prints_as_openssl_prints_it() {
        let subject = fixture();
        assert_eq!(subject.to_string(), OPENSSL);
        // openssl's output, read back, is the same name; so is its display, and so is the
        // name written with other (equivalent) choices.
        assert_eq!(parse(OPENSSL), subject);
        assert_eq!(parse(OPENSSL).to_string(), OPENSSL);
        // The multi-valued RDN in the other order, types in other cases, long names and
        // OIDs, spaces around separators, UTF-8 for the escaped bytes, a hex escape.
        let same = concat!(
            r#"cn=\#orders\+ svc \<é\>\;\"q\"\\\ , OU=ops+userId=svc-7, "#,
            r#"organizationName=Example\2C Inc., dc=example,OID.0.9.2342.19200300.100.1.25=com"#
        );
        assert_eq!(parse(same), subject);
    }

    #[test]
    fn names_differ_by_value_case_rdn_order_and_missing_parts() {
        let subject = parse("CN=orders-svc,O=Example Corp");
        for other in [
            "CN=Orders-svc,O=Example Corp",
            "O=Example Corp,CN=orders-svc",
            "CN=orders-svc",
            "CN=orders-svc,O=Example Corp,C=DE",
            "CN=orders-svc+O=Example Corp",
            "CN=orders-svc,O=Example  Corp",
        ] {
            assert_ne!(parse(other), subject, "{other}");
        }
        assert_eq!(parse(" CN = orders-svc , O = Example Corp "), subject);
        // An escaped space is kept; unescaped ones at the ends of a value are not.
        assert_ne!(parse("CN=orders-svc\\ ,O=Example Corp"), subject);
    }

    #[test]
    fn hex_values_are_the_string_they_encode_or_compared_as_der() {
        // UTF8String "ab", BMPString "ab", PrintableString "ab": all the text "ab".
        for hex in ["#0C026162", "#1E0400610062", "#13026162"] {
            assert_eq!(parse(&format!("CN={hex}")), parse("CN=ab"), "{hex}");
        }
        // An OCTET STRING is not text: kept, and printed, as DER.
        let der = parse("1.2.3.4=#04020102");
        assert_eq!(der.to_string(), "1.2.3.4=#04020102");
        assert_ne!(der, parse("1.2.3.4=\\01\\02"));
        // An escaped sign before a digit is the sign, not a hex pair.
        assert_eq!(parse("CN=a\\+1").to_string(), "CN=a\\+1");
    }

    #[test]
    fn malformed_names_are_refused_with_the_reason() {
        for (text, why) in [
            ("", "empty"),
            ("CN", "type=value"),
            ("CN=a,", "type=value"),
            ("XX=a", "unknown attribute type \"XX\""),
            ("=a", "without a type"),
            ("1.=a", "not an OID"),
            ("CN=a;O=b", "\\;"),
            ("CN=\"a\"", "\\\""),
            ("CN=a\\x", "followed by"),
            ("CN=#0C02", "DER"),
            ("CN=#zz", "hex"),
            ("CN=\\FF", "UTF-8"),
        ] {
            let e = Subject::parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
