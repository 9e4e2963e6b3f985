//! The web configuration file (`--web.config.file`) in the format of the Prometheus
//! exporter-toolkit: TLS for the listener (`tls_server_config`, with client certificates),
//! response headers (`http_server_config`) and basic auth with bcrypt hashes (`basic_auth_users`).
//!
//! This module parses and validates the file, builds the rustls configuration and the
//! authenticator from it, and re-reads it when it or a file it names changes, so certificates
//! rotate without a restart; a bad new file is logged and the running one stays. It does not
//! serve: `crate::http` asks [`WebConfig::current`] for the settings of each connection and request.

pub mod auth;
mod tls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderName, HeaderValue};
use serde::de::IgnoredAny;
use serde::Deserialize;

/// How often a request may look whether the files changed (one `stat` per file).
const CHANGE_CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("cannot read web config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("web config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("web config file {path}: {field}: {message}")]
    Invalid { path: PathBuf, field: String, message: String },
}

/// The file as the exporter-toolkit defines it. Unknown fields are refused; fields of the toolkit
/// this exporter does not support are refused with the reason.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfigFile {
    /// TLS for the listener; absent: plain HTTP.
    pub tls_server_config: Option<TlsServerConfig>,
    /// HTTP options: headers added to every response.
    pub http_server_config: HttpServerConfig,
    /// User names and their bcrypt hashes; when any is given every endpoint but `/-/healthy` and
    /// `/-/ready` needs one of them.
    pub basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// PEM certificate chain of the server, leaf first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// `NoClientCert` (default without `client_ca_file`), `VerifyClientCertIfGiven` or
    /// `RequireAndVerifyClientCert` (default with `client_ca_file`).
    pub client_auth_type: Option<String>,
    /// PEM file of the CAs that sign client certificates.
    pub client_ca_file: Option<PathBuf>,
    /// `TLS12` (default) or `TLS13`.
    pub min_version: Option<String>,
    /// `TLS12` or `TLS13` (default).
    pub max_version: Option<String>,
    /// TLS 1.2 cipher suites allowed, by IANA name (`TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`);
    /// TLS 1.3 suites are not configurable, as in Go.
    pub cipher_suites: Option<Vec<String>>,
    /// Accepted for compatibility and without effect (Go ignores it since 1.18; rustls always
    /// prefers the server's order).
    pub prefer_server_cipher_suites: Option<bool>,
    /// Toolkit fields not supported here: refused with a reason rather than silently ignored.
    pub cert: Option<IgnoredAny>,
    pub key: Option<IgnoredAny>,
    pub client_ca: Option<IgnoredAny>,
    pub client_allowed_sans: Option<IgnoredAny>,
    pub curve_preferences: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpServerConfig {
    /// HTTP/2 is not served (HTTP/1.1 only): `false` is accepted, `true` refused.
    pub http2: Option<bool>,
    /// Headers added to every response; only the security headers the toolkit allows.
    pub headers: BTreeMap<String, String>,
}

/// Headers the toolkit lets a web config set (it refuses the others, which the server owns).
const ALLOWED_HEADERS: &[&str] = &[
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// What one version of the file makes: used for a connection or a request as a whole.
pub struct WebSettings {
    /// TLS for new connections; None: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// None: no authentication.
    pub auth: Option<auth::BasicAuth>,
}

impl WebSettings {
    fn plain() -> WebSettings {
        WebSettings { tls: None, headers: Vec::new(), auth: None }
    }
}

/// Modification time, size and inode of each file a version was built from: a change in any
/// means the files must be read again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint(Vec<(PathBuf, Option<FileVersion>)>);

/// Modification time, size and inode.
type FileVersion = (SystemTime, u64, u64);

impl Fingerprint {
    fn of(paths: &[PathBuf]) -> Fingerprint {
        use std::os::unix::fs::MetadataExt;
        Fingerprint(
            paths
                .iter()
                .map(|p| {
                    let meta = std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len(), m.ino())));
                    (p.clone(), meta)
                })
                .collect(),
        )
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.0.iter().map(|(p, _)| p.clone()).collect()
    }
}

/// A version read from the files, not yet in use.
pub struct Prepared {
    settings: WebSettings,
    fingerprint: Fingerprint,
}

/// The web configuration in use, shared by every connection.
pub struct WebConfig {
    path: Option<PathBuf>,
    /// Whether the listener speaks TLS: fixed at start (turning it on or off needs a restart).
    tls: bool,
    state: Mutex<State>,
}

struct State {
    current: Arc<WebSettings>,
    fingerprint: Fingerprint,
    checked_at: Instant,
    /// The files' fingerprint when a re-read last failed: the error is logged once per change.
    failed: Option<Fingerprint>,
}

impl WebConfig {
    /// No file: plain HTTP, no authentication.
    pub fn disabled() -> WebConfig {
        WebConfig::with(None, WebSettings::plain(), Fingerprint(Vec::new()))
    }

    /// Reads and validates the file; an error names the field.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let prepared = read(path)?;
        Ok(WebConfig::with(Some(path.to_path_buf()), prepared.settings, prepared.fingerprint))
    }

    fn with(path: Option<PathBuf>, settings: WebSettings, fingerprint: Fingerprint) -> WebConfig {
        WebConfig {
            path,
            tls: settings.tls.is_some(),
            state: Mutex::new(State {
                current: Arc::new(settings),
                fingerprint,
                checked_at: Instant::now(),
                failed: None,
            }),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls
    }

    /// The settings to use now. At most once a second it looks whether the files changed, and
    /// if so reads them again; a bad new version is logged (once) and the running one kept.
    pub fn current(&self) -> Arc<WebSettings> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(path) = &self.path else { return state.current.clone() };
        if state.checked_at.elapsed() < CHANGE_CHECK_EVERY {
            return state.current.clone();
        }
        state.checked_at = Instant::now();
        let now = Fingerprint::of(&state.fingerprint.paths());
        if now == state.fingerprint || state.failed.as_ref() == Some(&now) {
            return state.current.clone();
        }
        match read(path).and_then(|p| self.check(p)) {
            Ok(prepared) => {
                tracing::info!(file = %path.display(), "web config file changed: reloaded");
                state.current = Arc::new(prepared.settings);
                state.fingerprint = prepared.fingerprint;
                state.failed = None;
            }
            Err(e) => {
                tracing::error!(error = %e, "web config file changed but cannot be used: keeping the running one");
                state.failed = Some(now);
            }
        }
        state.current.clone()
    }

    /// Reads the files for a reload without using them yet (see [`WebConfig::install`]).
    pub fn prepare(&self) -> Result<Option<Prepared>, WebConfigError> {
        match &self.path {
            None => Ok(None),
            Some(path) => read(path).and_then(|p| self.check(p)).map(Some),
        }
    }

    /// Puts a prepared version in use for new connections and requests.
    pub fn install(&self, prepared: Prepared) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.current = Arc::new(prepared.settings);
        state.fingerprint = prepared.fingerprint;
        state.checked_at = Instant::now();
        state.failed = None;
    }

    /// What a running listener cannot take.
    fn check(&self, prepared: Prepared) -> Result<Prepared, WebConfigError> {
        if prepared.settings.tls.is_some() != self.tls {
            return Err(WebConfigError::Invalid {
                path: self.path.clone().unwrap_or_default(),
                field: "tls_server_config".into(),
                message: format!("turning TLS {} needs a restart", if self.tls { "off" } else { "on" }),
            });
        }
        Ok(prepared)
    }
}

/// Reads the file and every file it names.
fn read(path: &Path) -> Result<Prepared, WebConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| WebConfigError::Read { path: path.to_path_buf(), source })?;
    let file: WebConfigFile = if text.trim().is_empty() {
        WebConfigFile::default()
    } else {
        yaml_serde::from_str(&text)
            .map_err(|e| WebConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let invalid = |field: String, message: String| WebConfigError::Invalid { path: path.to_path_buf(), field, message };
    let mut files = vec![path.to_path_buf()];
    let tls = match &file.tls_server_config {
        None => None,
        Some(t) => {
            let built = tls::build(t, base)
                .map_err(|(field, message)| invalid(format!("tls_server_config.{field}"), message))?;
            files.extend(built.files);
            Some(Arc::new(built.config))
        }
    };
    let h = &file.http_server_config;
    if h.http2 == Some(true) {
        return Err(invalid(
            "http_server_config.http2".into(),
            "HTTP/2 is not supported: only HTTP/1.1 is served".into(),
        ));
    }
    let mut headers = Vec::new();
    for (name, value) in &h.headers {
        let field = format!("http_server_config.headers.{name}");
        if !ALLOWED_HEADERS.iter().any(|a| a.eq_ignore_ascii_case(name)) {
            return Err(invalid(
                field,
                format!("setting this header is not allowed; allowed: {}", ALLOWED_HEADERS.join(", ")),
            ));
        }
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(field.clone(), e.to_string()))?;
        let v = HeaderValue::from_str(value).map_err(|e| invalid(field, e.to_string()))?;
        headers.push((n, v));
    }
    let auth = if file.basic_auth_users.is_empty() {
        None
    } else {
        Some(
            auth::BasicAuth::new(&file.basic_auth_users)
                .map_err(|(user, message)| invalid(format!("basic_auth_users.{user}"), message))?,
        )
    };
    Ok(Prepared { settings: WebSettings { tls, headers, auth }, fingerprint: Fingerprint::of(&files) })
}

/// A path from the file, relative to the file's directory as the toolkit resolves it.
fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<WebConfig, WebConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.yml");
        std::fs::write(&file, text).unwrap();
        WebConfig::load(&file)
    }

    fn error(text: &str) -> String {
        match load(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_file_is_plain_http_without_auth() {
        let c = load("").unwrap();
        assert!(!c.tls_enabled());
        assert!(c.current().auth.is_none());
    }

    #[test]
    fn unknown_and_unsupported_fields_are_named() {
        assert!(error("basic_auth_user:\n  a: b\n").contains("basic_auth_user"));
        let e = error("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_allowed_sans: [x]\n");
        assert!(e.contains("tls_server_config.client_allowed_sans"), "{e}");
        let e = error("http_server_config:\n  http2: true\n");
        assert!(e.contains("http_server_config.http2"), "{e}");
        let e = error("http_server_config:\n  headers:\n    Content-Type: x\n");
        assert!(e.contains("http_server_config.headers.Content-Type"), "{e}");
        let e = error("basic_auth_users:\n  alice: secret\n");
        assert!(e.contains("basic_auth_users.alice"), "{e}");
        let e = error("tls_server_config:\n  cert_file: nope.pem\n  key_file: nope.key\n");
        assert!(e.contains("tls_server_config.cert_file") && e.contains("nope.pem"), "{e}");
    }

    #[test]
    fn allowed_headers_are_kept() {
        let c = load("http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n").unwrap();
        let s = c.current();
        assert_eq!(s.headers.len(), 1);
        assert_eq!(s.headers[0].0.as_str(), "x-frame-options");
    }
}
