//! Certificate credentials: the app registration's certificate and private key,
//! and the signed JWT ("client assertion") Entra ID accepts instead of a secret.
//!
//! Signing uses aws-lc-rs directly, the crypto backend rustls already brings:
//! a JWT is two base64url JSON objects and a signature, and parsing the key
//! once here also lets the configuration check that key and certificate match.

use std::fmt;

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaEncoding};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::SecretString;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

/// How long a client assertion is valid: Entra accepts at most 10 minutes.
pub(crate) const ASSERTION_LIFETIME_SECS: i64 = 600;

/// `client_assertion_type` for a JWT client assertion (RFC 7523).
pub(crate) const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The JWT signature algorithm and the matching thumbprint header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "UPPERCASE", ascii_case_insensitive)]
pub enum AssertionAlg {
    /// RSASSA-PSS with SHA-256 and header `x5t#S256` (what current Entra docs show).
    Ps256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 and header `x5t` (SHA-1 thumbprint; older docs).
    Rs256,
}

impl AssertionAlg {
    pub fn parse(s: &str) -> Option<Self> {
        s.trim().parse().ok()
    }

    fn name(self) -> &'static str {
        self.into()
    }

    fn encoding(self) -> &'static dyn RsaEncoding {
        match self {
            Self::Ps256 => &RSA_PSS_SHA256,
            Self::Rs256 => &RSA_PKCS1_SHA256,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) found")]
    NoCertificate,
    #[error("the certificate cannot be read: {0}")]
    BadCertificate(String),
    #[error(
        "no PEM private key found (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)"
    )]
    NoKey,
    #[error(
        "the private key is encrypted; only unencrypted PEM is supported (e.g. `openssl pkcs8 -topk8 -nocrypt`)"
    )]
    EncryptedKey,
    #[error("Entra ID client assertions need an RSA key; this key is not RSA")]
    NotRsa,
    #[error("the private key cannot be used: {0}")]
    BadKey(String),
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("cannot sign the client assertion")]
    Signing,
}

impl CertificateError {
    /// Whether the problem lies with the key rather than the certificate, so
    /// configuration errors can name the right setting.
    pub fn concerns_key(&self) -> bool {
        !matches!(self, Self::NoCertificate | Self::BadCertificate(_))
    }
}

/// A parsed certificate credential. Debug shows the thumbprint only.
pub struct ClientCertificate {
    key: RsaKeyPair,
    alg: AssertionAlg,
    /// base64url SHA-256 of the DER certificate (`x5t#S256`).
    thumbprint_sha256: String,
    /// base64url SHA-1 of the DER certificate (`x5t`), what the portal shows in hex.
    thumbprint_sha1: String,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("alg", &self.alg)
            .field("x5t#S256", &self.thumbprint_sha256)
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// The first certificate in `cert_pem` is the app's; the first private
    /// key in `key_pem` (which may be the same text) must be its key.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        alg: AssertionAlg,
    ) -> Result<Self, CertificateError> {
        let cert = match CertificateDer::pem_slice_iter(cert_pem).next() {
            Some(Ok(c)) => c,
            Some(Err(e)) => return Err(CertificateError::BadCertificate(e.to_string())),
            None => return Err(CertificateError::NoCertificate),
        };
        let cert_key = match spki_rsa_public_key(&cert) {
            Spki::Rsa(k) => k,
            Spki::Other => return Err(CertificateError::NotRsa),
            Spki::Unreadable => {
                return Err(CertificateError::BadCertificate(
                    "not an X.509 certificate".into(),
                ));
            }
        };
        let key = match PrivateKeyDer::from_pem_slice(key_pem) {
            Ok(PrivateKeyDer::Pkcs8(k)) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            Ok(PrivateKeyDer::Pkcs1(k)) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            Ok(_) => return Err(CertificateError::NotRsa),
            Err(_) if contains(key_pem, b"ENCRYPTED") => {
                return Err(CertificateError::EncryptedKey);
            }
            Err(rustls_pki_types::pem::Error::NoItemsFound) => {
                return Err(CertificateError::NoKey);
            }
            Err(e) => return Err(CertificateError::BadKey(e.to_string())),
        }
        .map_err(|e| match e.description_() {
            // A PKCS#8 key of another algorithm (EC, Ed25519) lands here.
            "WrongAlgorithm" | "UnexpectedError" => CertificateError::NotRsa,
            other => CertificateError::BadKey(other.to_owned()),
        })?;
        if key.public_key().as_ref() != cert_key {
            return Err(CertificateError::KeyMismatch);
        }
        Ok(Self {
            key,
            alg,
            thumbprint_sha256: URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, &cert)),
            thumbprint_sha1: URL_SAFE_NO_PAD
                .encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &cert)),
        })
    }

    pub fn alg(&self) -> AssertionAlg {
        self.alg
    }

    /// The signed client assertion for one token request to `audience` (the
    /// token endpoint URL). Fresh every time: its `jti` must never repeat.
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: OffsetDateTime,
    ) -> Result<SecretString, CertificateError> {
        let mut header = json!({"alg": self.alg.name(), "typ": "JWT"});
        match self.alg {
            AssertionAlg::Ps256 => header["x5t#S256"] = json!(self.thumbprint_sha256),
            AssertionAlg::Rs256 => header["x5t"] = json!(self.thumbprint_sha1),
        }
        let now = now.unix_timestamp();
        let claims = json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                self.alg.encoding(),
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| CertificateError::Signing)?;
        Ok(SecretString::from(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        )))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

enum Spki<'a> {
    /// The PKCS#1 `RSAPublicKey` DER, comparable with aws-lc-rs' public key.
    Rsa(&'a [u8]),
    Other,
    Unreadable,
}

/// rsaEncryption, 1.2.840.113549.1.1.1
const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// The subject public key of an X.509 certificate. Walks only the outer
/// structure (RFC 5280 §4.1), which is all a key match needs; Entra checks
/// the certificate itself.
fn spki_rsa_public_key(cert: &[u8]) -> Spki<'_> {
    fn walk(cert: &[u8]) -> Option<(&[u8], &[u8])> {
        let (cert, _) = expect(cert, 0x30)?;
        let (tbs, _) = expect(cert, 0x30)?;
        // `[0] version` is absent in v1 certificates; the serial number follows it.
        let (first, _, after_first) = tlv(tbs)?;
        let mut rest = if first == 0xa0 {
            tlv(after_first)?.2
        } else {
            after_first
        };
        // signature, issuer, validity, subject
        for _ in 0..4 {
            rest = tlv(rest)?.2;
        }
        let (spki, _) = expect(rest, 0x30)?;
        let (algorithm, rest) = expect(spki, 0x30)?;
        let (oid, _) = expect(algorithm, 0x06)?;
        let (bits, _) = expect(rest, 0x03)?;
        Some((oid, bits))
    }
    match walk(cert) {
        Some((oid, bits)) if oid == RSA_ENCRYPTION_OID => match bits.split_first() {
            // The first byte of a BIT STRING counts unused bits: 0 for a key.
            Some((0, key)) => Spki::Rsa(key),
            _ => Spki::Unreadable,
        },
        Some(_) => Spki::Other,
        None => Spki::Unreadable,
    }
}

/// One DER element: (tag, contents, what follows).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match tlv(input)? {
        (t, contents, rest) if t == tag => Some((contents, rest)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        std::fs::read(path).unwrap()
    }

    #[test]
    fn pkcs8_pkcs1_and_combined_pem_all_load() {
        let cert = fixture("client-cert.pem");
        for key in ["client-key.pem", "client-key-pkcs1.pem"] {
            ClientCertificate::from_pem(&cert, &fixture(key), AssertionAlg::Ps256).unwrap();
        }
        let both = fixture("client-combined.pem");
        let c = ClientCertificate::from_pem(&both, &both, AssertionAlg::Rs256).unwrap();
        // openssl x509 -noout -fingerprint -sha1, in base64url.
        assert_eq!(c.thumbprint_sha1, "yGU9Eh23Z3lLCaPKcv3EPoyUoL0");
    }

    #[test]
    fn problems_are_told_apart() {
        let cert = fixture("client-cert.pem");
        let key = fixture("client-key.pem");
        let err = |c: &[u8], k: &[u8]| {
            ClientCertificate::from_pem(c, k, AssertionAlg::Ps256).unwrap_err()
        };
        assert_eq!(
            err(&cert, &fixture("other-key.pem")),
            CertificateError::KeyMismatch
        );
        assert_eq!(err(&key, &key), CertificateError::NoCertificate);
        assert_eq!(err(&cert, &fixture("ec-key.pem")), CertificateError::NotRsa);
        assert_eq!(err(&cert, &cert), CertificateError::NoKey);
        let encrypted =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(err(&cert, encrypted), CertificateError::EncryptedKey);
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            err(garbage, &key),
            CertificateError::BadCertificate(_)
        ));
        assert!(!err(garbage, &key).concerns_key());
        assert!(err(&cert, &cert).concerns_key());
    }

    #[test]
    fn debug_and_errors_never_show_key_material() {
        let both = fixture("client-combined.pem");
        let c = ClientCertificate::from_pem(&both, &both, AssertionAlg::Ps256).unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("x5t#S256") && !shown.contains("PRIVATE"));
        let jwt = c
            .assertion(
                "client",
                "https://login/t/oauth2/v2.0/token",
                OffsetDateTime::now_utc(),
            )
            .unwrap();
        assert_eq!(jwt.expose_secret().split('.').count(), 3);
        assert!(!format!("{jwt:?}").contains(jwt.expose_secret()));
    }
}
