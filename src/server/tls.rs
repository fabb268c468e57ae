//! The certificate of HTTPS and SIP over TLS (`[tls]`): read from the configured PEM
//! files, or — on a first start with none configured — a self-signed one made once and
//! kept in `<data_dir>/tls/`, so that restarts present the same certificate and clients
//! that pinned its fingerprint keep trusting it.
//!
//! rustls on ring, as for the https webhooks: no OpenSSL, no aws-lc (no cmake, no
//! bindgen on the build machine).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::Config;

/// The self-signed certificate's file, in `<data_dir>/tls/`.
pub const SELF_SIGNED_CERTIFICATE: &str = "self-signed.crt";
/// Its private key (mode 0600), beside it.
pub const SELF_SIGNED_KEY: &str = "self-signed.key";
/// A self-signed certificate is valid about two years (Apple's clients refuse TLS server
/// certificates valid longer than 825 days) and made anew at a start after this long.
const SELF_SIGNED_RENEW_AFTER: Duration = Duration::from_secs(700 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {what} {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not valid PEM")]
    BadPem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("the certificate {certificate} and the key {key} are not usable together")]
    Rejected {
        certificate: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("cannot make a self-signed certificate")]
    Generate(#[source] rcgen::Error),
    #[error("cannot store the self-signed certificate in {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the certificate came from (said in the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `[tls] certificate` and `private_key`.
    Configured { certificate: PathBuf, key: PathBuf },
    /// Made at this start and stored at `path`.
    SelfSignedNew { path: PathBuf },
    /// Made at an earlier start, read from `path`.
    SelfSignedKept { path: PathBuf },
}

/// The certificate chain and key the listeners present.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub origin: Origin,
}

impl Identity {
    /// SHA-256 of the leaf certificate, as browsers and `openssl x509 -fingerprint
    /// -sha256` show it (`AB:CD:…`).
    #[must_use]
    pub fn fingerprint(&self) -> String {
        self.chain
            .first()
            .map(|leaf| fingerprint(leaf))
            .unwrap_or_default()
    }

    /// A rustls server configuration offering `alpn` (e.g. `http/1.1`; none for SIP).
    ///
    /// # Errors
    /// The key does not fit the certificate, or is of a kind ring cannot sign with.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let (certificate, key) = self.paths();
        let rejected = |source| TlsError::Rejected {
            certificate: certificate.clone(),
            key: key.clone(),
            source,
        };
        let provider = Arc::new(crate::http_client::tls_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(rejected)?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(rejected)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        if alpn.is_empty() {
            // SIP connections live for hours (a phone keeps its registration flow):
            // resumption gains nothing there, and the tickets TLS 1.3 sends after the
            // handshake trip up simple clients (sipsak reads one as its answer).
            config.send_tls13_tickets = 0;
        }
        Ok(Arc::new(config))
    }

    fn paths(&self) -> (PathBuf, PathBuf) {
        match &self.origin {
            Origin::Configured { certificate, key } => (certificate.clone(), key.clone()),
            Origin::SelfSignedNew { path } | Origin::SelfSignedKept { path } => {
                (path.clone(), path.with_file_name(SELF_SIGNED_KEY))
            }
        }
    }
}

/// SHA-256 of a DER certificate as colon-separated upper-case hex.
#[must_use]
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The directory of the self-signed certificate.
#[must_use]
pub fn self_signed_dir(config: &Config) -> PathBuf {
    config.server.data_dir.join("tls")
}

/// The configured certificate, or the self-signed one (made now if there is none yet,
/// or if it is due for renewal).
///
/// # Errors
/// A configured file is missing or not PEM, the key does not fit, or the self-signed
/// certificate cannot be made or stored.
pub fn load_or_create(config: &Config) -> Result<Identity, TlsError> {
    if let (Some(certificate), Some(key)) = (&config.tls.certificate, &config.tls.private_key) {
        let identity = Identity {
            chain: read_chain(certificate)?,
            key: read_key(key)?,
            origin: Origin::Configured {
                certificate: certificate.clone(),
                key: key.clone(),
            },
        };
        check_pair(&identity, certificate, key)?;
        return Ok(identity);
    }
    let dir = self_signed_dir(config);
    let certificate = dir.join(SELF_SIGNED_CERTIFICATE);
    let key = dir.join(SELF_SIGNED_KEY);
    let due = std::fs::metadata(&certificate)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|made| SystemTime::now().duration_since(made).ok())
        .is_none_or(|age| age >= SELF_SIGNED_RENEW_AFTER);
    if !due && key.exists() {
        let identity = Identity {
            chain: read_chain(&certificate)?,
            key: read_key(&key)?,
            origin: Origin::SelfSignedKept {
                path: certificate.clone(),
            },
        };
        check_pair(&identity, &certificate, &key)?;
        return Ok(identity);
    }
    let (chain, private_key) = make_self_signed(&self_signed_names(config))?;
    store_self_signed(&dir, &certificate, &key, &chain, &private_key)?;
    Ok(Identity {
        chain: vec![CertificateDer::from(chain.der().to_vec())],
        key: PrivateKeyDer::try_from(private_key.serialize_der())
            .map_err(|_| TlsError::NoKey { path: key.clone() })?,
        origin: Origin::SelfSignedNew { path: certificate },
    })
}

/// What `check-config` says of the TLS settings: the configured files are read and
/// checked as the server would; without them, where the self-signed certificate is or
/// will be. `None` when no listener asks for TLS.
///
/// # Errors
/// As [`load_or_create`] for configured files.
pub fn check(config: &Config) -> Result<Option<String>, TlsError> {
    if !crate::config::TlsConfig::wanted(&config.server) {
        return Ok(None);
    }
    if let (Some(certificate), Some(key)) = (&config.tls.certificate, &config.tls.private_key) {
        let identity = Identity {
            chain: read_chain(certificate)?,
            key: read_key(key)?,
            origin: Origin::Configured {
                certificate: certificate.clone(),
                key: key.clone(),
            },
        };
        check_pair(&identity, certificate, key)?;
        return Ok(Some(format!(
            "TLS certificate {} (SHA-256 {})",
            certificate.display(),
            identity.fingerprint()
        )));
    }
    let path = self_signed_dir(config).join(SELF_SIGNED_CERTIFICATE);
    Ok(Some(if path.exists() {
        format!(
            "TLS: the self-signed certificate {} is used",
            path.display()
        )
    } else {
        format!(
            "TLS: no [tls] certificate: a self-signed one is made at the first start in {}",
            path.display()
        )
    }))
}

/// SDES puts the SRTP keys in the SDP: without SIP over TLS they cross the network in
/// clear, and SRTP then hides the audio from no one who reads the signalling. Named for
/// `check-config` and the start-up log.
#[must_use]
pub fn sdes_gaps(config: &Config) -> Option<String> {
    use crate::config::MediaEncryption;
    if config.server.sip_tls_listen.is_some() {
        return None;
    }
    let agents: Vec<&str> = config
        .agents
        .iter()
        .filter(|a| a.media_encryption != MediaEncryption::None)
        .map(|a| a.id.as_str())
        .collect();
    let trunks: Vec<&str> = config
        .trunks
        .iter()
        .filter(|t| t.media_encryption != MediaEncryption::None)
        .map(|t| t.name.as_str())
        .collect();
    if agents.is_empty() && trunks.is_empty() {
        return None;
    }
    let mut who = Vec::new();
    if !agents.is_empty() {
        who.push(format!("agents {}", agents.join(", ")));
    }
    if !trunks.is_empty() {
        who.push(format!("trunks {}", trunks.join(", ")));
    }
    Some(format!(
        "{} use SRTP with SDES keys but server.sip_tls_listen is off: the keys travel in clear SIP",
        who.join(" and ")
    ))
}

fn check_pair(identity: &Identity, certificate: &Path, key: &Path) -> Result<(), TlsError> {
    let provider = crate::http_client::tls_provider();
    let signing = provider
        .key_provider
        .load_private_key(identity.key.clone_key())
        .map_err(|source| TlsError::Rejected {
            certificate: certificate.to_path_buf(),
            key: key.to_path_buf(),
            source,
        })?;
    let certified = rustls::sign::CertifiedKey::new(identity.chain.clone(), signing);
    certified.keys_match().map_err(|source| TlsError::Rejected {
        certificate: certificate.to_path_buf(),
        key: key.to_path_buf(),
        source,
    })
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file("TLS certificate", path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::BadPem {
            path: path.to_path_buf(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file("TLS private key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        source => TlsError::BadPem {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// The names a self-signed certificate is made for: loopback, the SIP domain, this
/// machine's host name and the listeners' own addresses when they are not wildcards.
fn self_signed_names(config: &Config) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
        config.server.domain.clone(),
    ];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(host.trim().to_owned());
    }
    for addr in [config.server.https_listen, config.server.sip_tls_listen]
        .into_iter()
        .flatten()
        .chain([config.server.http_listen, config.server.sip_listen])
    {
        if !addr.ip().is_unspecified() {
            names.push(addr.ip().to_string());
        }
    }
    // rcgen refuses names that are not DNS names or addresses (a host name with `_`).
    names.retain(|n| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
    });
    names.sort();
    names.dedup();
    names
}

fn make_self_signed(names: &[String]) -> Result<(rcgen::Certificate, rcgen::KeyPair), TlsError> {
    use chrono::Datelike;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(TlsError::Generate)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "12348 hotline (self-signed)");
    let today = chrono::Utc::now().date_naive();
    let yesterday = today.pred_opt().unwrap_or(today);
    // Whole days, two years at most: the renewal above comes first.
    let month = u8::try_from(today.month()).unwrap_or(1);
    params.not_before = rcgen::date_time_ymd(
        yesterday.year(),
        u8::try_from(yesterday.month()).unwrap_or(1),
        u8::try_from(yesterday.day()).unwrap_or(1),
    );
    params.not_after = rcgen::date_time_ymd(today.year() + 2, month, 1);
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(TlsError::Generate)?;
    let certificate = params.self_signed(&key).map_err(TlsError::Generate)?;
    Ok((certificate, key))
}

fn store_self_signed(
    dir: &Path,
    certificate_path: &Path,
    key_path: &Path,
    certificate: &rcgen::Certificate,
    key: &rcgen::KeyPair,
) -> Result<(), TlsError> {
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    write_private(key_path, key.serialize_pem().as_bytes()).map_err(write_error(key_path))?;
    // The certificate last: a start that dies between the two writes makes a new pair.
    let temporary = certificate_path.with_extension("crt.tmp");
    std::fs::write(&temporary, certificate.pem()).map_err(write_error(&temporary))?;
    std::fs::rename(&temporary, certificate_path).map_err(write_error(certificate_path))
}

/// Write a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("key.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_in(dir: &Path, tls: &str) -> Config {
        let text = format!(
            "[server]\ndomain = \"hotline.test\"\nhttps_listen = \"127.0.0.1:8443\"\n{tls}"
        );
        let mut config = Config::from_toml(&text).expect("config");
        config.resolve_paths(dir);
        config
    }

    #[test]
    fn a_first_start_makes_a_self_signed_certificate_and_later_starts_keep_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config_in(dir.path(), "");
        let first = load_or_create(&config).expect("made");
        let path = dir.path().join("data/tls").join(SELF_SIGNED_CERTIFICATE);
        assert_eq!(first.origin, Origin::SelfSignedNew { path: path.clone() });
        let fingerprint = first.fingerprint();
        assert_eq!(fingerprint.len(), 32 * 3 - 1, "{fingerprint}");
        let key_mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("data/tls").join(SELF_SIGNED_KEY))
                .expect("key")
                .permissions(),
        );
        assert_eq!(key_mode & 0o777, 0o600);
        let again = load_or_create(&config).expect("kept");
        assert_eq!(again.origin, Origin::SelfSignedKept { path });
        assert_eq!(again.fingerprint(), fingerprint);
        again.server_config(&[b"http/1.1"]).expect("usable");
    }

    #[test]
    fn srtp_keys_without_sip_over_tls_are_named() {
        let agent = "\n[[cities]]\nid = \"jinan\"\nname = \"济南\"\narea_codes = [\"0531\"]\n\
                     numbers = [\"053112348\"]\n\n[[agents]]\nid = \"1001\"\nname = \"a\"\n\
                     city = \"jinan\"\npassword = \"p\"\nmedia_encryption = \"required\"\n";
        let config = |server: &str| {
            Config::from_toml(&format!(
                "[server]\ndomain = \"hotline.test\"\n{server}{agent}"
            ))
            .expect("config")
        };
        let gap = sdes_gaps(&config("")).expect("named");
        assert!(gap.contains("agents 1001"), "{gap}");
        assert_eq!(
            sdes_gaps(&config("sip_tls_listen = \"127.0.0.1:5061\"\n")),
            None
        );
    }

    #[test]
    fn configured_files_that_are_missing_or_not_pem_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config_in(
            dir.path(),
            "[tls]\ncertificate = \"cert.pem\"\nprivate_key = \"key.pem\"\n",
        );
        let err = load_or_create(&config).expect_err("missing");
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
        assert!(err.to_string().contains("cert.pem"), "{err}");
        std::fs::write(dir.path().join("cert.pem"), "not a certificate\n").expect("write");
        let err = load_or_create(&config).expect_err("not pem");
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        // A real certificate with another certificate's key.
        let (one, _) = make_self_signed(&["localhost".into()]).expect("one");
        let (_, other_key) = make_self_signed(&["localhost".into()]).expect("two");
        std::fs::write(dir.path().join("cert.pem"), one.pem()).expect("write");
        std::fs::write(dir.path().join("key.pem"), "-----BEGIN CERTIFICATE-----\n").expect("w");
        let err = load_or_create(&config).expect_err("bad key");
        assert!(matches!(err, TlsError::BadPem { .. }), "{err}");
        std::fs::write(dir.path().join("key.pem"), other_key.serialize_pem()).expect("write");
        let err = load_or_create(&config).expect_err("mismatch");
        assert!(matches!(err, TlsError::Rejected { .. }), "{err}");
    }
}
