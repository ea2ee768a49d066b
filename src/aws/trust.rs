//! The CA certificates every TLS client of the process trusts (the AWS client, the registry's
//! `/v2/` probe, the API server when the kubeconfig names no CA), loaded once per process.
//!
//! Where from, as rustls-native-certs decides, with one saving: `SSL_CERT_FILE` and
//! `SSL_CERT_DIR`, when either is set, are read exactly as rustls-native-certs reads them;
//! otherwise the system bundle (`/etc/ssl/certs/ca-certificates.crt` and the other places
//! openssl-probe knows) is read alone when it exists, and the certificate directory only when
//! there is no bundle. The bundle is the directory's certificates in one file, so reading both
//! (rustls-native-certs' habit) opened some 150 files on every start of the kubelet plugin for
//! nothing new. The bundle's PEM is decoded with the `base64` crate: rustls-pki-types decodes
//! in constant time, as private keys need, and that was the largest part of the plugin's own
//! CPU time at start; certificates are public.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

/// What to read: a bundle file and certificate directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub file: Option<PathBuf>,
    pub dirs: Vec<PathBuf>,
}

/// Chooses the sources. `cert_file` and `cert_dir` are `SSL_CERT_FILE` and `SSL_CERT_DIR`;
/// `probe` finds the system's bundle and directories (openssl-probe), asked only when neither
/// variable is set.
pub fn sources(
    cert_file: Option<OsString>,
    cert_dir: Option<OsString>,
    probe: impl FnOnce() -> (Option<PathBuf>, Vec<PathBuf>),
) -> Sources {
    if cert_file.is_some() || cert_dir.is_some() {
        return Sources {
            file: cert_file.map(PathBuf::from),
            dirs: cert_dir
                .map(|d| {
                    std::env::split_paths(&d)
                        .filter(|p| !p.as_os_str().is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        };
    }
    match probe() {
        (Some(file), _) => Sources {
            file: Some(file),
            dirs: Vec::new(),
        },
        (None, dirs) => Sources { file: None, dirs },
    }
}

/// The trust roots, in the forms the clients take.
pub struct Roots {
    /// Every certificate webpki accepts as a trust anchor.
    pub store: RootCertStore,
    /// The same certificates, DER.
    pub der: Vec<CertificateDer<'static>>,
    /// The same certificates, PEM: what the SDK's trust store takes.
    pub pem: Vec<u8>,
    /// Certificates that were found but are no trust anchor, and files that could not be read.
    pub rejected: usize,
}

impl Roots {
    /// Keeps the certificates a trust store accepts; the SDK's would panic on the others.
    pub fn from_certificates(certs: Vec<CertificateDer<'static>>, errors: usize) -> Roots {
        let mut store = RootCertStore::empty();
        let mut der = Vec::new();
        let mut pem = Vec::new();
        let mut rejected = errors;
        for cert in certs {
            if store.add(cert.clone()).is_err() {
                rejected += 1;
                continue;
            }
            pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
            for line in STANDARD.encode(cert.as_ref()).as_bytes().chunks(64) {
                pem.extend_from_slice(line);
                pem.push(b'\n');
            }
            pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
            der.push(cert);
        }
        Roots {
            store,
            der,
            pem,
            rejected,
        }
    }
}

/// The certificates of PEM text: every `CERTIFICATE` block, whatever lies between blocks, and
/// how many blocks could not be decoded.
pub fn pem_certificates(text: &[u8]) -> (Vec<CertificateDer<'static>>, usize) {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    // `str::find` is a fast substring search; a byte that is not UTF-8 (a comment in some other
    // encoding) cannot be inside a block, so replacing it changes no certificate.
    let text = String::from_utf8_lossy(text);
    let (mut certs, mut bad) = (Vec::new(), 0);
    let mut rest: &str = &text;
    while let Some(begin) = rest.find(BEGIN) {
        let body = &rest[begin + BEGIN.len()..];
        let Some(end) = body.find(END) else {
            bad += 1;
            break;
        };
        let base64: Vec<u8> = body.as_bytes()[..end]
            .iter()
            .copied()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        match STANDARD.decode(&base64) {
            Ok(der) => certs.push(CertificateDer::from(der)),
            Err(_) => bad += 1,
        }
        rest = &body[end + END.len()..];
    }
    (certs, bad)
}

/// Reads the certificates of `sources`, each file once, without duplicates.
pub fn load(sources: &Sources) -> Roots {
    let mut certs = Vec::new();
    let mut errors = 0;
    if let Some(file) = &sources.file {
        match std::fs::read(file) {
            Ok(text) => {
                let (found, bad) = pem_certificates(&text);
                certs.extend(found);
                errors += bad;
            }
            Err(e) => {
                tracing::debug!(file = %file.display(), error = %e, "cannot read the CA bundle");
                errors += 1;
            }
        }
    }
    for dir in &sources.dirs {
        let found = rustls_native_certs::load_certs_from_paths(None, Some(dir));
        for e in &found.errors {
            tracing::debug!(error = %e, "skipped a CA certificate source");
        }
        errors += found.errors.len();
        certs.extend(found.certs);
    }
    certs.sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
    certs.dedup();
    Roots::from_certificates(certs, errors)
}

static ROOTS: LazyLock<Roots> = LazyLock::new(|| {
    let sources = sources(
        std::env::var_os("SSL_CERT_FILE"),
        std::env::var_os("SSL_CERT_DIR"),
        || {
            let found = openssl_probe::probe();
            (found.cert_file, found.cert_dir)
        },
    );
    let roots = load(&sources);
    if roots.der.is_empty() {
        tracing::warn!(
            ?sources,
            "no CA certificates found: TLS connections will fail; install the ca-certificates package or set SSL_CERT_FILE to a PEM bundle"
        );
    }
    roots
});

/// The process's trust roots, read on first use.
pub fn roots() -> &'static Roots {
    &ROOTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    /// A self-signed P-256 CA (`openssl req -x509 -newkey ec`), valid until 2126.
    const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBqTCCAU+gAwIBAgIUMjTLpOaovOpk7Ou2sS0omDDWQeIwCgYIKoZIzj0EAwIw
KTEnMCUGA1UEAwweZWNyLXNlY3JldC1yZWZyZXNoZXIgdGVzdCByb290MCAXDTI2
MTIwNDIxMjgyM1oYDzIxMjYxMTEwMjEyODIzWjApMScwJQYDVQQDDB5lY3Itc2Vj
cmV0LXJlZnJlc2hlciB0ZXN0IHJvb3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AASYAUsZfv5QL5kqrVHTxhkicI+YXR8dllMpJrOXz2BB/KSw78RT6PSDD7a89Pjn
2E83lpnc2X/8LddvwWev6Z3Vo1MwUTAdBgNVHQ4EFgQUWMPC5IBIf5Tsb5hRuVNW
7/C+weYwHwYDVR0jBBgwFoAUWMPC5IBIf5Tsb5hRuVNW7/C+weYwDwYDVR0TAQH/
BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAiyLR07DaLEz6qPE8x18RfJ6I/0Mv
nZ/jU6liI7tR1aACIFInUpg4VsAIKJdlpvIxRGTHnFYDe6sGdzynQOCsPA3K
-----END CERTIFICATE-----
";

    fn probe_never() -> (Option<PathBuf>, Vec<PathBuf>) {
        panic!("the system was probed although SSL_CERT_FILE or SSL_CERT_DIR is set")
    }

    #[test]
    fn the_variables_win_and_are_read_as_rustls_native_certs_reads_them() {
        assert_eq!(
            sources(Some("/ca.pem".into()), None, probe_never),
            Sources {
                file: Some("/ca.pem".into()),
                dirs: vec![]
            }
        );
        assert_eq!(
            sources(None, Some("/a::/b".into()), probe_never),
            Sources {
                file: None,
                dirs: vec!["/a".into(), "/b".into()]
            }
        );
    }

    #[test]
    fn the_system_bundle_alone_when_it_exists_else_the_directories() {
        let dirs = vec![PathBuf::from("/etc/ssl/certs")];
        let bundle = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
        assert_eq!(
            sources(None, None, || (Some(bundle.clone()), dirs.clone())),
            Sources {
                file: Some(bundle),
                dirs: vec![]
            }
        );
        assert_eq!(
            sources(None, None, || (None, dirs.clone())),
            Sources { file: None, dirs }
        );
    }

    /// The fast decoder finds what rustls-pki-types finds: CRLF line ends, text between
    /// blocks, other PEM kinds, and the system bundle when there is one.
    #[test]
    fn pem_decoding_agrees_with_rustls_pki_types() {
        let crlf = CA.replace('\n', "\r\n");
        let mixed = format!(
            "# a comment\n{CA}\n-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n{crlf}"
        );
        let system = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
        for text in [CA.as_bytes(), mixed.as_bytes(), &system] {
            let theirs: Vec<_> = CertificateDer::pem_slice_iter(text)
                .collect::<Result<_, _>>()
                .unwrap();
            let (ours, bad) = pem_certificates(text);
            assert_eq!(ours, theirs);
            assert_eq!(bad, 0);
        }
        assert_eq!(pem_certificates(mixed.as_bytes()).0.len(), 2);
        let cut = &CA[..CA.len() - 10];
        assert_eq!(pem_certificates(cut.as_bytes()), (vec![], 1));
    }

    #[test]
    fn loads_a_bundle_and_a_directory_without_duplicates_or_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle.pem");
        std::fs::write(&bundle, format!("{CA}{CA}")).unwrap();
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        std::fs::write(certs.join("same.pem"), CA).unwrap();
        // A certificate block that is no certificate: skipped and counted, not fatal.
        std::fs::write(
            certs.join("junk.pem"),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let roots = load(&Sources {
            file: Some(bundle),
            dirs: vec![certs],
        });
        assert_eq!(roots.der.len(), 1);
        assert_eq!(roots.store.len(), 1);
        assert_eq!(roots.rejected, 1);
        // The PEM form decodes to the same certificate.
        let again: Vec<_> = CertificateDer::pem_slice_iter(&roots.pem)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(again, roots.der);
        let missing = load(&Sources {
            file: Some(dir.path().join("absent.pem")),
            dirs: vec![],
        });
        assert!(missing.der.is_empty() && missing.rejected == 1);
    }
}
