//! Checks of a certificate a site's owner supplies with its key: task-api refuses one
//! that would not serve the site before anything changes, and the web server's worker
//! checks again before the web server sees it (apache's config test does not compare
//! a key with its certificate).

use chrono::{DateTime, Utc};
use x509_parser::pem::Pem;

/// What a supplied certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppliedSummary {
    pub not_after: DateTime<Utc>,
    pub issuer: String,
    /// Hex, colon separated.
    pub serial: String,
    /// The names it is valid for (its DNS subject alternative names, else its common name).
    pub names: Vec<String>,
}

/// Why a supplied certificate cannot serve a site; each says what to give instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateProblem {
    #[error(
        "the certificate chain holds no PEM certificate (`-----BEGIN CERTIFICATE-----`); give the site's certificate \
         first, then its intermediates"
    )]
    NoCertificate,
    #[error("the certificate chain holds a private key; give the key separately and only certificates in the chain")]
    KeyInChain,
    #[error("certificate {index} of the chain cannot be read ({reason}); give PEM certificates only")]
    BadCertificate { index: usize, reason: String },
    #[error(
        "the key cannot be read ({0}); give an unencrypted PEM private key (PKCS#8, RSA or EC); an encrypted one \
         can be decrypted with `openssl pkey -in key.pem -out plain.pem`"
    )]
    BadKey(String),
    #[error(
        "the key does not belong to the certificate (for {names}): their public keys differ; give the key the \
         certificate was issued for, and the site's own certificate first in the chain"
    )]
    KeyMismatch { names: String },
    #[error("the certificate expired at {0}; give a current one")]
    Expired(DateTime<Utc>),
    #[error("the certificate is valid only from {0}; give one valid now")]
    NotYetValid(DateTime<Utc>),
    #[error(
        "the certificate is for {covered}, not for {missing}: it must cover the site's uri and every alias; give one \
         that names them all, or change the site's aliases first"
    )]
    NamesNotCovered { covered: String, missing: String },
}

impl CertificateProblem {
    /// Whether the problem is the key's (else the certificate's).
    pub fn is_about_key(&self) -> bool {
        matches!(self, CertificateProblem::BadKey(_) | CertificateProblem::KeyMismatch { .. })
    }
}

fn timestamp(t: x509_parser::time::ASN1Time) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(t.timestamp(), 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Whether certificate name `pattern` (maybe `*.example.com`) covers host `name`.
fn covers(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    match pattern.strip_prefix("*.") {
        // A wildcard stands for exactly one label.
        Some(parent) => name.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => pattern == name,
    }
}

/// Checks a supplied chain (PEM, the site's certificate first) and key (PEM) for
/// `names` (the site's uri and aliases) at `now`: every certificate reads, the key is
/// the first certificate's, which is valid now and covers every name. The key is never
/// part of an error.
pub fn check_supplied(
    chain_pem: &str,
    key_pem: &str,
    names: &[&str],
    now: DateTime<Utc>,
) -> Result<SuppliedSummary, CertificateProblem> {
    let mut blocks = Vec::new();
    for block in Pem::iter_from_buffer(chain_pem.as_bytes()) {
        let block =
            block.map_err(|e| CertificateProblem::BadCertificate { index: blocks.len() + 1, reason: e.to_string() })?;
        if block.label.contains("PRIVATE KEY") {
            return Err(CertificateProblem::KeyInChain);
        }
        if block.label != "CERTIFICATE" {
            return Err(CertificateProblem::BadCertificate {
                index: blocks.len() + 1,
                reason: format!("a PEM block labelled `{}`", block.label),
            });
        }
        blocks.push(block);
    }
    let Some(first) = blocks.first() else { return Err(CertificateProblem::NoCertificate) };
    for (i, block) in blocks.iter().enumerate() {
        block.parse_x509().map_err(|e| CertificateProblem::BadCertificate { index: i + 1, reason: e.to_string() })?;
    }
    let cert =
        first.parse_x509().map_err(|e| CertificateProblem::BadCertificate { index: 1, reason: e.to_string() })?;

    let mut covered: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(name) => Some((*name).to_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if covered.is_empty() {
        covered = cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok().map(str::to_owned)).collect();
    }
    let listed = if covered.is_empty() { "no host name".to_owned() } else { covered.join(", ") };

    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| CertificateProblem::BadKey(e.to_string()))?;
    if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(CertificateProblem::KeyMismatch { names: listed });
    }

    let validity = cert.validity();
    let (not_before, not_after) = (timestamp(validity.not_before), timestamp(validity.not_after));
    if not_after <= now {
        return Err(CertificateProblem::Expired(not_after));
    }
    if not_before > now {
        return Err(CertificateProblem::NotYetValid(not_before));
    }
    let missing: Vec<&str> = names.iter().copied().filter(|n| !covered.iter().any(|c| covers(c, n))).collect();
    if !missing.is_empty() {
        return Err(CertificateProblem::NamesNotCovered { covered: listed, missing: missing.join(", ") });
    }
    Ok(SuppliedSummary {
        not_after,
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        names: covered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Made {
        chain: String,
        key: String,
    }

    fn ca() -> (rcgen::Issuer<'static, rcgen::KeyPair>, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "test CA");
        let cert = params.self_signed(&key).unwrap();
        (rcgen::Issuer::new(params, key), cert.pem())
    }

    fn leaf(names: &[&str], days: (i64, i64)) -> Made {
        let (issuer, ca_pem) = ca();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(days.0);
        params.not_after = now + time::Duration::days(days.1);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Made { chain: format!("{}{ca_pem}", cert.pem()), key: key.serialize_pem() }
    }

    #[test]
    fn a_matching_current_certificate_for_every_name_passes() {
        let made = leaf(&["example.com", "*.example.com"], (-1, 30));
        let summary = check_supplied(&made.chain, &made.key, &["example.com", "www.example.com"], Utc::now()).unwrap();
        assert_eq!(summary.names, ["example.com", "*.example.com"]);
        assert!(summary.issuer.contains("test CA"));
        assert!(summary.not_after > Utc::now() + chrono::Duration::days(29));
    }

    #[test]
    fn wrong_key_names_dates_and_shapes_are_refused_without_the_key() {
        let made = leaf(&["example.com"], (-1, 30));
        let other = leaf(&["example.com"], (-1, 30));
        let now = Utc::now();
        let e = check_supplied(&made.chain, &other.key, &["example.com"], now).unwrap_err();
        assert!(matches!(e, CertificateProblem::KeyMismatch { .. }) && e.is_about_key(), "{e}");
        assert!(!e.to_string().contains("PRIVATE"));
        let e = check_supplied(&made.chain, &made.key, &["example.com", "www.example.com"], now).unwrap_err();
        assert!(e.to_string().contains("not for www.example.com"), "{e}");
        let e = check_supplied(&made.chain, &made.key, &["a.b.example.com"], now).unwrap_err();
        assert!(matches!(e, CertificateProblem::NamesNotCovered { .. }), "{e}");
        let expired = leaf(&["example.com"], (-30, -1));
        let e = check_supplied(&expired.chain, &expired.key, &["example.com"], now).unwrap_err();
        assert!(matches!(e, CertificateProblem::Expired(_)), "{e}");
        let e = check_supplied("not pem", &made.key, &["example.com"], now).unwrap_err();
        assert_eq!(e, CertificateProblem::NoCertificate);
        let e = check_supplied(&made.key, &made.key, &["example.com"], now).unwrap_err();
        assert_eq!(e, CertificateProblem::KeyInChain);
        let e = check_supplied(&made.chain, "garbage", &["example.com"], now).unwrap_err();
        assert!(matches!(e, CertificateProblem::BadKey(_)), "{e}");
    }

    #[test]
    fn a_wildcard_covers_one_label() {
        assert!(covers("*.example.com", "www.Example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(covers("Example.com", "example.com"));
    }
}
