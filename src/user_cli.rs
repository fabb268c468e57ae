//! `hotline user add`: a console / API user appended to the config's `[[users]]`, with
//! an argon2id `password_hash` (the format `api::auth` verifies) and optionally the
//! SHA-256 of a new API token. The password (when generated) and the token are printed
//! once; only their hashes are stored. The config is validated with the new entry
//! before it is replaced (atomically), so a bad `--role` or unit changes nothing.
//!
//! Also the lines the server logs on a first start: where the console is and who can
//! sign in.

use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHasher, SaltString};
use sha2::{Digest, Sha256};

use crate::config::{Config, ConfigError, UnitKind, UserConfig};

#[derive(Debug, thiserror::Error)]
pub enum UserAddError {
    #[error("cannot read config file {}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config is invalid already; fix it first (hotline check-config)\n{0}")]
    Invalid(#[source] ConfigError),
    #[error("user {0:?} exists already; choose another --id")]
    Exists(String),
    #[error("no province unit in [[units]]; name the user's unit with --city / --unit")]
    NoRootUnit,
    #[error("the new user is refused:\n{0}")]
    Refused(String),
    #[error("cannot hash the password")]
    Hash,
    #[error("cannot write {}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What `hotline user add` was asked for.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    /// Default: `<role>-<unit>`.
    pub id: Option<String>,
    /// Default: the id.
    pub name: Option<String>,
    /// snake_case role names (`dispatcher`, `unit_handler`, …).
    pub roles: Vec<String>,
    /// Unit id; default: the province unit.
    pub unit: Option<String>,
    pub agent: Option<String>,
    /// Default: a generated one, printed once.
    pub password: Option<String>,
    /// Create an API token (printed once).
    pub token: bool,
}

/// What was added; the secrets are shown once and stored only as hashes.
#[derive(Debug, Clone)]
pub struct AddedUser {
    pub id: String,
    pub unit: String,
    pub roles: Vec<String>,
    /// Set when the password was generated.
    pub generated_password: Option<String>,
    pub token: Option<String>,
}

/// An argon2id PHC string (the crate's default parameters) with a random salt.
///
/// # Errors
/// [`UserAddError::Hash`] (never expected with the default parameters).
pub fn hash_password(password: &str) -> Result<String, UserAddError> {
    let salt =
        SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|_| UserAddError::Hash)?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| UserAddError::Hash)
}

/// A new API token: 32 random bytes, hex.
#[must_use]
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn generated_password() -> String {
    // 20 characters from 56 without look-alikes (0/O, 1/l/I): about 116 bits.
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..20)
        .map(|_| {
            let i = rand::random_range(0..ALPHABET.len());
            char::from(ALPHABET[i])
        })
        .collect()
}

fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// The `[[users]]` block for a user (hashes only).
#[must_use]
pub fn user_block(
    id: &str,
    name: &str,
    roles: &[String],
    unit: &str,
    agent: Option<&str>,
    password_hash: &str,
    token_sha256: Option<&str>,
) -> String {
    let roles = roles
        .iter()
        .map(|r| quoted(r))
        .collect::<Vec<_>>()
        .join(", ");
    let mut block = format!(
        "\n# Added by `hotline user add`.\n[[users]]\nid = {}\nname = {}\npassword_hash = {}\nroles = [{roles}]\nunit = {}\n",
        quoted(id),
        quoted(name),
        quoted(password_hash),
        quoted(unit),
    );
    if let Some(agent) = agent {
        block.push_str(&format!("agent = {}\n", quoted(agent)));
    }
    if let Some(sha) = token_sha256 {
        block.push_str(&format!("api_token = {}\n", quoted(sha)));
    }
    block
}

/// Append a user to the config file at `path` (validated, then replaced atomically).
///
/// # Errors
/// The config cannot be read or is invalid, the id is taken, the new entry is invalid
/// (unknown role, unit or agent), the file cannot be written.
pub fn add_user(path: &Path, new: &NewUser) -> Result<AddedUser, UserAddError> {
    let text = std::fs::read_to_string(path).map_err(|source| UserAddError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let config = Config::from_toml(&text).map_err(|problems| {
        UserAddError::Invalid(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    })?;
    let unit = match &new.unit {
        Some(u) => u.clone(),
        None => config
            .units
            .iter()
            .find(|u| u.kind == UnitKind::Province)
            .map(|u| u.id.clone())
            .ok_or(UserAddError::NoRootUnit)?,
    };
    let id = new.id.clone().unwrap_or_else(|| {
        format!(
            "{}-{unit}",
            new.roles.first().map_or("user", String::as_str)
        )
    });
    if config.users.iter().any(|u| u.id == id) {
        return Err(UserAddError::Exists(id));
    }
    let generated = new.password.is_none().then(generated_password);
    let password = new.password.clone().or_else(|| generated.clone());
    let hash = hash_password(password.as_deref().unwrap_or_default())?;
    let token = new.token.then(new_token);
    let token_sha = token
        .as_deref()
        .map(|t| hex::encode(Sha256::digest(t.as_bytes())));
    let block = user_block(
        &id,
        new.name.as_deref().unwrap_or(&id),
        &new.roles,
        &unit,
        new.agent.as_deref(),
        &hash,
        token_sha.as_deref(),
    );
    let mut updated = text.clone();
    if !updated.ends_with('\n') {
        updated.push('\n');
    }
    updated.push_str(&block);
    if let Err(problems) = Config::from_toml(&updated) {
        let lines = problems
            .iter()
            .map(|p| format!("  {}: {}", p.path, p.message))
            .collect::<Vec<_>>()
            .join("\n");
        return Err(UserAddError::Refused(lines));
    }
    replace_file(path, &updated)?;
    Ok(AddedUser {
        id,
        unit,
        roles: new.roles.clone(),
        generated_password: generated,
        token,
    })
}

/// Write `text` beside `path`, with its permissions, fsync, and rename over it.
fn replace_file(path: &Path, text: &str) -> Result<(), UserAddError> {
    let err = |source| UserAddError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    let tmp = path.with_file_name(name);
    let metadata = std::fs::metadata(path).map_err(err)?;
    let mut file = std::fs::File::create(&tmp).map_err(err)?;
    file.set_permissions(metadata.permissions()).map_err(err)?;
    // Keep the owner and group too: the packaged config is root:hotline 0640, and the
    // service reads it through its group.
    {
        use std::os::unix::fs::MetadataExt;
        let (uid, gid) = (metadata.uid(), metadata.gid());
        let current = file.metadata().map_err(err)?;
        if current.uid() != uid || current.gid() != gid {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(err)?;
        }
    }
    file.write_all(text.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(())
}

/// The console's address for a listen address (`0.0.0.0` → this machine's loopback).
#[must_use]
pub fn console_url(scheme: &str, http: std::net::SocketAddr) -> String {
    let host = match http.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    format!("{scheme}://{host}:{}/", http.port())
}

/// What a first start (no work orders yet) tells the operator after the ready line:
/// who can sign in — the development users with plain-text passwords from the config,
/// with them — or how to create a user.
#[must_use]
pub fn first_start_lines(users: &[UserConfig]) -> Vec<String> {
    if users.is_empty() {
        return vec![
            "no console users: create one with `hotline user add --role dispatcher --city <unit> --token` (prints its password and API token once), then restart".to_owned(),
        ];
    }
    let mut lines = Vec::new();
    let plain: Vec<String> = users
        .iter()
        .filter_map(|u| {
            u.password
                .as_ref()
                .map(|p| format!("{} / {p} ({})", u.id, role_names(u)))
        })
        .collect();
    if !plain.is_empty() {
        lines.push(format!(
            "demo users with plain-text passwords from the config (development only; replace them with `hotline user add`): {}",
            plain.join(", ")
        ));
    }
    let hashed = users.iter().filter(|u| u.password.is_none()).count();
    if hashed > 0 {
        lines.push(format!(
            "{hashed} users with argon2 password hashes; `hotline user add --role … --token` adds one and prints its API token"
        ));
    }
    lines
}

fn role_names(u: &UserConfig) -> String {
    u.roles
        .iter()
        .map(|r| format!("{r:?}"))
        .map(|r| snake(&r))
        .collect::<Vec<_>>()
        .join(", ")
}

fn snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHash, PasswordVerifier};

    #[test]
    fn the_hash_verifies_with_argon2_and_the_block_parses() {
        let hash = hash_password("s3cret pass").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let parsed = PasswordHash::new(&hash).expect("phc");
        assert!(
            argon2::Argon2::default()
                .verify_password(b"s3cret pass", &parsed)
                .is_ok()
        );
        assert!(
            argon2::Argon2::default()
                .verify_password(b"wrong", &parsed)
                .is_err()
        );
        let block = user_block(
            "d\"1",
            "转办员",
            &["dispatcher".to_owned()],
            "jinan",
            None,
            &hash,
            Some(&"a".repeat(64)),
        );
        let doc: toml::Table = toml::from_str(&block).expect("toml");
        let user = &doc["users"].as_array().expect("users")[0];
        assert_eq!(user["id"].as_str(), Some("d\"1"));
        assert_eq!(user["password_hash"].as_str(), Some(hash.as_str()));
    }

    #[test]
    fn console_url_names_loopback_for_a_wildcard_listen_address() {
        assert_eq!(
            console_url("http", "0.0.0.0:8080".parse().expect("addr")),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(
            console_url("https", "10.1.2.3:8443".parse().expect("addr")),
            "https://10.1.2.3:8443/"
        );
        assert_eq!(
            console_url("http", "[::]:8080".parse().expect("addr")),
            "http://[::1]:8080/"
        );
    }

    #[test]
    fn first_start_names_demo_users_or_says_how_to_create_one() {
        let lines = first_start_lines(&[]);
        assert!(lines[0].contains("hotline user add"), "{lines:?}");
        let config = Config::from_toml(
            &std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/hotline.toml"),
            )
            .expect("shipped config"),
        )
        .expect("valid");
        let lines = first_start_lines(&config.users);
        assert!(
            lines[0].contains("dispatcher / demo-dispatcher (dispatcher)"),
            "{lines:?}"
        );
        assert!(
            lines[0].contains("handler / demo-handler (unit_handler)"),
            "{lines:?}"
        );
    }
}
