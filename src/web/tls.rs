//! `tls_server_config` as rustls understands it. Errors are (field, message) so the caller can
//! name the field with its section.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{resolve, TlsServerConfig};

type FieldError = (String, String);

fn err(field: &str, message: impl Into<String>) -> FieldError {
    (field.to_string(), message.into())
}

pub(super) struct Built {
    pub config: ServerConfig,
    /// The files read, watched for changes.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ClientAuth {
    None,
    VerifyIfGiven,
    Require,
}

pub(super) fn build(t: &TlsServerConfig, base: &Path) -> Result<Built, FieldError> {
    for (field, given) in [("cert", t.cert.is_some()), ("key", t.key.is_some()), ("client_ca", t.client_ca.is_some())] {
        if given {
            return Err(err(field, format!("inline PEM is not supported: use {field}_file")));
        }
    }
    if t.client_allowed_sans.is_some() {
        return Err(err("client_allowed_sans", "not supported: sign client certificates with a CA of their own"));
    }
    if t.curve_preferences.is_some() {
        return Err(err("curve_preferences", "not supported: rustls chooses among X25519, P-256 and P-384"));
    }
    let auth = match t.client_auth_type.as_deref() {
        None if t.client_ca_file.is_some() => ClientAuth::Require,
        None | Some("NoClientCert") => ClientAuth::None,
        Some("VerifyClientCertIfGiven") => ClientAuth::VerifyIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuth::Require,
        Some(other @ ("RequestClientCert" | "RequireAnyClientCert")) => {
            return Err(err(
                "client_auth_type",
                format!("{other} is not supported: a client certificate that is not verified proves nothing; use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"),
            ))
        }
        Some(other) => {
            return Err(err(
                "client_auth_type",
                format!("unknown value {other:?}; use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
            ))
        }
    };
    let provider = Arc::new(provider(t.cipher_suites.as_deref())?);
    let versions = versions(t.min_version.as_deref(), t.max_version.as_deref())?;
    let cert_file = t.cert_file.as_ref().ok_or_else(|| err("cert_file", "required (with key_file)"))?;
    let key_file = t.key_file.as_ref().ok_or_else(|| err("key_file", "required (with cert_file)"))?;
    let cert_file = resolve(base, cert_file);
    let key_file = resolve(base, key_file);
    let mut files = vec![cert_file.clone(), key_file.clone()];
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err("cert_file", format!("{}: {e}", cert_file.display())))?;
    if certs.is_empty() {
        return Err(err("cert_file", format!("{}: no PEM certificate in it", cert_file.display())));
    }
    let key =
        PrivateKeyDer::from_pem_file(&key_file).map_err(|e| err("key_file", format!("{}: {e}", key_file.display())))?;

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| err("cipher_suites", format!("no usable cipher suite for these TLS versions: {e}")))?;
    let builder = match (auth, &t.client_ca_file) {
        (ClientAuth::None, Some(_)) => {
            return Err(err("client_ca_file", "set, but client_auth_type is NoClientCert"));
        }
        (ClientAuth::None, None) => builder.with_no_client_auth(),
        (_, None) => return Err(err("client_ca_file", "required to verify client certificates")),
        (auth, Some(ca)) => {
            let ca = resolve(base, ca);
            let mut roots = RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(&ca)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| err("client_ca_file", format!("{}: {e}", ca.display())))?;
            let (added, _) = roots.add_parsable_certificates(cas);
            if added == 0 {
                return Err(err("client_ca_file", format!("{}: no usable CA certificate in it", ca.display())));
            }
            files.push(ca);
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::VerifyIfGiven { verifier.allow_unauthenticated() } else { verifier };
            let verifier = verifier.build().map_err(|e| err("client_ca_file", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config =
        builder.with_single_cert(certs, key).map_err(|e| err("key_file", format!("does not fit cert_file: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Built { config, files })
}

fn version(field: &str, v: &str) -> Result<u8, FieldError> {
    match v {
        "TLS12" => Ok(2),
        "TLS13" => Ok(3),
        "TLS10" | "TLS11" => Err(err(field, format!("{v} is not supported (TLS 1.2 or 1.3)"))),
        _ => Err(err(field, format!("unknown version {v:?}; use TLS12 or TLS13"))),
    }
}

fn versions(min: Option<&str>, max: Option<&str>) -> Result<Vec<&'static SupportedProtocolVersion>, FieldError> {
    let min = min.map(|v| version("min_version", v)).transpose()?.unwrap_or(2);
    let max = max.map(|v| version("max_version", v)).transpose()?.unwrap_or(3);
    if min > max {
        return Err(err("max_version", "lower than min_version"));
    }
    let mut out = Vec::new();
    if min <= 3 && max >= 3 {
        out.push(&rustls::version::TLS13);
    }
    if min <= 2 {
        out.push(&rustls::version::TLS12);
    }
    Ok(out)
}

/// ring's provider; with `cipher_suites`, only those TLS 1.2 suites (TLS 1.3 suites are kept,
/// as Go keeps them).
fn provider(suites: Option<&[String]>) -> Result<CryptoProvider, FieldError> {
    let mut provider = rustls::crypto::ring::default_provider();
    let Some(names) = suites else { return Ok(provider) };
    let name_of = |s: &rustls::SupportedCipherSuite| format!("{:?}", s.suite());
    for (i, name) in names.iter().enumerate() {
        let known = provider.cipher_suites.iter().any(|s| name_of(s) == *name);
        if !known {
            let tls12: Vec<String> =
                provider.cipher_suites.iter().filter(|s| s.tls13().is_none()).map(name_of).collect();
            return Err(err(
                &format!("cipher_suites[{i}]"),
                format!("unknown or unsupported suite {name:?}; supported: {}", tls12.join(", ")),
            ));
        }
    }
    provider.cipher_suites.retain(|s| s.tls13().is_some() || names.contains(&name_of(s)));
    Ok(provider)
}
