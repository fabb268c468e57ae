//! TLS listeners for tests: a config with HTTPS and SIP over TLS on free ports, the
//! server's self-signed certificate, and curl as the HTTPS client (it checks the
//! certificate against the one given, as a browser that was told to trust it would).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{Output, Server, free_port, require, run_bounded};

/// Where a config's TLS listeners are.
#[derive(Debug, Clone, Copy)]
pub struct TlsPorts {
    pub https: SocketAddr,
    pub sip_tls: SocketAddr,
}

/// `config` with `https_listen` and `sip_tls_listen` on free loopback ports in its
/// `[server]` section.
pub fn with_tls_listeners(config: &str) -> (String, TlsPorts) {
    let ports = TlsPorts {
        https: SocketAddr::from(([127, 0, 0, 1], free_port())),
        sip_tls: SocketAddr::from(([127, 0, 0, 1], free_port())),
    };
    assert!(config.contains("[server]\n"), "no [server] section");
    let text = config.replacen(
        "[server]\n",
        &format!(
            "[server]\nhttps_listen = \"{}\"\nsip_tls_listen = \"{}\"\n",
            ports.https, ports.sip_tls
        ),
        1,
    );
    (text, ports)
}

/// The self-signed certificate the server made in its data directory.
pub fn self_signed_certificate(server: &Server) -> PathBuf {
    server.data_dir().join("tls/self-signed.crt")
}

/// SHA-256 of a PEM certificate file's first certificate, as the server logs it.
pub fn pem_fingerprint(path: &Path) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let pem = std::fs::read_to_string(path).expect("read certificate");
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64");
    sha2::Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// curl with the response head included (`-i`), trusting only `ca`; extra arguments
/// after the defaults.
pub fn curl(ca: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(require("curl"));
    cmd.args(["-sS", "-i", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(args);
    run_bounded(&mut cmd, Duration::from_secs(15))
}

/// The status code of curl's `-i` output (the last response head's).
pub fn curl_status(out: &Output) -> u16 {
    out.stdout
        .lines()
        .rfind(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}
