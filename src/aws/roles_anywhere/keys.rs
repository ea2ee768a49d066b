//! The certificate chain and private key of a Roles Anywhere identity: loading them from PEM
//! files, and the checks that make a bad file fail before any request, naming the file.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use der::{Decode, Encode};
use pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use x509_cert::Certificate as X509;

use crate::sensitive::Sensitive;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----): {message}")]
    NoCertificate { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    BadKey { path: PathBuf, message: String },
    #[error(
        "{path} holds a {what} key; Roles Anywhere signs with RSA (2048 to 4096 bits) or EC P-256/P-384 keys"
    )]
    Unsupported { path: PathBuf, what: String },
    #[error(
        "{path} is encrypted: give its passphrase with --ra-private-key-passphrase-file or --ra-private-key-passphrase-env"
    )]
    NeedsPassphrase { path: PathBuf },
    #[error("cannot decrypt {path}: {message}. Is the passphrase right?")]
    Decrypt { path: PathBuf, message: String },
    #[error(
        "the private key {key} does not belong to the certificate {cert}: their public keys differ"
    )]
    Mismatch { key: PathBuf, cert: PathBuf },
    #[error(
        "the certificate {path} {when}; Roles Anywhere will refuse it. Issue a new certificate"
    )]
    Validity { path: PathBuf, when: String },
}

/// One X.509 certificate, with what signing needs from it.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub der: Vec<u8>,
    /// The serial number in decimal: the credential in the Authorization header.
    pub serial: String,
    not_before: SystemTime,
    not_after: SystemTime,
    /// The raw subjectPublicKey bits and the key algorithm OID, to match the private key.
    public_key: Vec<u8>,
}

/// A private key that can sign for Roles Anywhere. `Debug` shows only the kind.
pub enum SigningKey {
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.kind())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|e| KeyError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Big-endian unsigned bytes as a decimal string.
pub fn decimal(bytes: &[u8]) -> String {
    let mut digits: Vec<u8> = vec![0];
    for &byte in bytes {
        let mut carry = byte as u32;
        for d in digits.iter_mut() {
            let v = (*d as u32) * 256 + carry;
            *d = (v % 10) as u8;
            carry = v / 10;
        }
        while carry > 0 {
            digits.push((carry % 10) as u8);
            carry /= 10;
        }
    }
    while digits.len() > 1 && digits.last() == Some(&0) {
        digits.pop();
    }
    digits.iter().rev().map(|d| char::from(b'0' + d)).collect()
}

impl Certificate {
    fn from_x509(cert: &X509) -> Result<Certificate, String> {
        let tbs = &cert.tbs_certificate;
        let spki = &tbs.subject_public_key_info;
        let mut public_key = spki.algorithm.oid.to_string().into_bytes();
        public_key.extend_from_slice(spki.subject_public_key.raw_bytes());
        Ok(Certificate {
            der: cert.to_der().map_err(|e| e.to_string())?,
            serial: decimal(tbs.serial_number.as_bytes()),
            not_before: SystemTime::UNIX_EPOCH + tbs.validity.not_before.to_unix_duration(),
            not_after: SystemTime::UNIX_EPOCH + tbs.validity.not_after.to_unix_duration(),
            public_key,
        })
    }

    /// Fails when `now` is outside the certificate's validity period.
    pub fn check_validity(&self, path: &Path, now: SystemTime) -> Result<(), KeyError> {
        let stamp = |t: SystemTime| {
            let secs = t
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs();
            jiff::Timestamp::from_second(secs as i64)
                .map(|t| t.to_string())
                .unwrap_or_else(|_| format!("{secs}s"))
        };
        let when = if now < self.not_before {
            format!("is not valid before {}", stamp(self.not_before))
        } else if now > self.not_after {
            format!("expired at {}", stamp(self.not_after))
        } else {
            return Ok(());
        };
        Err(KeyError::Validity {
            path: path.to_path_buf(),
            when,
        })
    }
}

/// All certificates in a PEM file, in order; for the leaf file, the first is the leaf.
pub fn load_certificates(path: &Path) -> Result<Vec<Certificate>, KeyError> {
    let bytes = read(path)?;
    let no_cert = |message: String| KeyError::NoCertificate {
        path: path.to_path_buf(),
        message,
    };
    let chain = X509::load_pem_chain(&bytes).map_err(|e| no_cert(e.to_string()))?;
    if chain.is_empty() {
        return Err(no_cert("the file is empty".into()));
    }
    chain
        .iter()
        .map(Certificate::from_x509)
        .collect::<Result<_, _>>()
        .map_err(no_cert)
}

impl SigningKey {
    pub fn kind(&self) -> String {
        match self {
            SigningKey::Rsa(k) => format!("RSA-{}", k.size() * 8),
            SigningKey::P256(_) => "EC P-256".into(),
            SigningKey::P384(_) => "EC P-384".into(),
        }
    }

    /// The algorithm name of the Authorization header.
    pub fn algorithm(&self) -> &'static str {
        match self {
            SigningKey::Rsa(_) => "AWS4-X509-RSA-SHA256",
            SigningKey::P256(_) | SigningKey::P384(_) => "AWS4-X509-ECDSA-SHA256",
        }
    }

    /// Signs `message` with SHA-256 for every key type: RSA PKCS#1 v1.5, ECDSA as DER.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        use sha2::Digest;
        match self {
            SigningKey::Rsa(k) => {
                let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new((**k).clone());
                signer.sign(message).to_vec()
            }
            SigningKey::P256(k) => {
                let digest = sha2::Sha256::digest(message);
                // A 32-byte digest always fits the curve; signing it cannot fail.
                let sig: Result<p256::ecdsa::Signature, _> = k.sign_prehash(&digest);
                sig.map(|s| s.to_der().as_bytes().to_vec())
                    .unwrap_or_default()
            }
            SigningKey::P384(k) => {
                // Roles Anywhere wants SHA-256 even with P-384: sign the SHA-256 prehash.
                let digest = sha2::Sha256::digest(message);
                let sig: Result<p384::ecdsa::Signature, _> = k.sign_prehash(&digest);
                sig.map(|s| s.to_der().as_bytes().to_vec())
                    .unwrap_or_default()
            }
        }
    }

    /// The public key as the certificate carries it: algorithm OID, then the key bits.
    fn public_key(&self) -> Result<Vec<u8>, String> {
        let spki_der = match self {
            SigningKey::Rsa(k) => k.to_public_key().to_public_key_der(),
            SigningKey::P256(k) => k.verifying_key().to_public_key_der(),
            SigningKey::P384(k) => k.verifying_key().to_public_key_der(),
        }
        .map_err(|e| e.to_string())?;
        let spki = pkcs8::spki::SubjectPublicKeyInfoRef::from_der(spki_der.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut out = spki.algorithm.oid.to_string().into_bytes();
        out.extend_from_slice(spki.subject_public_key.raw_bytes());
        Ok(out)
    }

    /// Fails unless this key is the private half of `cert`.
    pub fn check_matches(
        &self,
        cert: &Certificate,
        key_path: &Path,
        cert_path: &Path,
    ) -> Result<(), KeyError> {
        let mine = self.public_key().map_err(|message| KeyError::BadKey {
            path: key_path.to_path_buf(),
            message,
        })?;
        if mine == cert.public_key {
            Ok(())
        } else {
            Err(KeyError::Mismatch {
                key: key_path.to_path_buf(),
                cert: cert_path.to_path_buf(),
            })
        }
    }
}

fn unsupported(path: &Path, what: impl Into<String>) -> KeyError {
    KeyError::Unsupported {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

fn rsa_key(path: &Path, key: rsa::RsaPrivateKey) -> Result<SigningKey, KeyError> {
    let bits = key.size() * 8;
    if !(2048..=4096).contains(&bits) {
        return Err(unsupported(path, format!("RSA-{bits}")));
    }
    Ok(SigningKey::Rsa(Box::new(key)))
}

/// A key from PKCS#8 `PrivateKeyInfo` DER, by its algorithm.
fn from_pkcs8(path: &Path, der: &[u8]) -> Result<SigningKey, KeyError> {
    let bad = |e: &dyn std::fmt::Display| KeyError::BadKey {
        path: path.to_path_buf(),
        message: format!("malformed PKCS#8 key: {e}"),
    };
    let info = pkcs8::PrivateKeyInfo::try_from(der).map_err(|e| bad(&e))?;
    let oid = info.algorithm.oid.to_string();
    let curve = info
        .algorithm
        .parameters_oid()
        .map(|o| o.to_string())
        .unwrap_or_default();
    match (oid.as_str(), curve.as_str()) {
        (OID_RSA, _) => rsa_key(
            path,
            rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(|e| bad(&e))?,
        ),
        (OID_EC, OID_P256) => Ok(SigningKey::P256(
            p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(|e| bad(&e))?,
        )),
        (OID_EC, OID_P384) => Ok(SigningKey::P384(
            p384::ecdsa::SigningKey::from_pkcs8_der(der).map_err(|e| bad(&e))?,
        )),
        (OID_EC, other) => Err(unsupported(path, format!("EC key on curve {other}"))),
        ("1.3.101.112", _) => Err(unsupported(path, "Ed25519")),
        ("1.2.840.10040.4.1", _) => Err(unsupported(path, "DSA")),
        (other, _) => Err(unsupported(path, format!("key of algorithm {other}"))),
    }
}

/// A key from SEC1 `ECPrivateKey` DER (`-----BEGIN EC PRIVATE KEY-----`).
fn from_sec1(path: &Path, der: &[u8]) -> Result<SigningKey, KeyError> {
    let bad = |e: &dyn std::fmt::Display| KeyError::BadKey {
        path: path.to_path_buf(),
        message: format!("malformed SEC1 EC key: {e}"),
    };
    let key = sec1::EcPrivateKey::try_from(der).map_err(|e| bad(&e))?;
    let curve = key
        .parameters
        .and_then(|p| p.named_curve())
        .map(|o| o.to_string())
        .unwrap_or_default();
    match curve.as_str() {
        OID_P256 => p256::SecretKey::from_sec1_der(der)
            .map(|k| SigningKey::P256(k.into()))
            .map_err(|e| bad(&e)),
        OID_P384 => p384::SecretKey::from_sec1_der(der)
            .map(|k| SigningKey::P384(k.into()))
            .map_err(|e| bad(&e)),
        "" => Err(bad(&"the key names no curve")),
        other => Err(unsupported(path, format!("EC key on curve {other}"))),
    }
}

/// Loads the private key from a PEM file: PKCS#1 RSA, SEC1 EC, PKCS#8, or encrypted PKCS#8
/// (PBES2 with PBKDF2 or scrypt, AES-CBC), which needs `passphrase`.
pub fn load_key(path: &Path, passphrase: Option<&Sensitive>) -> Result<SigningKey, KeyError> {
    let bytes = read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let bad = |message: String| KeyError::BadKey {
        path: path.to_path_buf(),
        message,
    };
    // Skip anything before the key, such as the EC PARAMETERS block `openssl ecparam` writes.
    let start = [
        "-----BEGIN PRIVATE KEY-----",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----",
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----BEGIN EC PRIVATE KEY-----",
    ]
    .iter()
    .filter_map(|marker| text.find(marker))
    .min()
    .ok_or_else(|| {
        if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----") {
            bad("this is an OpenSSH key; convert it to PEM (PKCS#8) first".into())
        } else {
            bad("no PEM private key found (-----BEGIN PRIVATE KEY-----)".into())
        }
    })?;
    let block = &text[start..];
    if block.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(bad(
            "this is a legacy encrypted PEM key, which is not supported; convert it to encrypted PKCS#8 with `openssl pkcs8 -topk8 -v2 aes-256-cbc`".into(),
        ));
    }
    let (label, der) =
        der::pem::decode_vec(block.as_bytes()).map_err(|e| bad(format!("malformed PEM: {e}")))?;
    match label {
        "PRIVATE KEY" => from_pkcs8(path, &der),
        "RSA PRIVATE KEY" => {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            let key = rsa::RsaPrivateKey::from_pkcs1_der(&der)
                .map_err(|e| bad(format!("malformed PKCS#1 RSA key: {e}")))?;
            rsa_key(path, key)
        }
        "EC PRIVATE KEY" => from_sec1(path, &der),
        "ENCRYPTED PRIVATE KEY" => {
            let pass = passphrase.ok_or_else(|| KeyError::NeedsPassphrase {
                path: path.to_path_buf(),
            })?;
            let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice())
                .map_err(|e| bad(format!("malformed encrypted PKCS#8 key: {e}")))?;
            let doc = info
                .decrypt(pass.expose().as_bytes())
                .map_err(|e| KeyError::Decrypt {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
            from_pkcs8(path, doc.as_bytes())
        }
        other => Err(bad(format!("unexpected PEM block {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_numbers_in_decimal() {
        assert_eq!(decimal(&[]), "0");
        assert_eq!(decimal(&[0]), "0");
        assert_eq!(decimal(&[1, 0]), "256");
        assert_eq!(decimal(&[0x00, 0xff, 0xff]), "65535");
        // 2^128 - 1, a typical 16-byte random serial at its largest
        assert_eq!(
            decimal(&[0xff; 16]),
            "340282366920938463463374607431768211455"
        );
        assert_eq!(
            decimal(&[0x5d, 0x2f, 0x8a, 0x0b, 0x13, 0xc4, 0x7e, 0x99, 0x01]),
            "1718972761501085899009"
        );
    }
}
