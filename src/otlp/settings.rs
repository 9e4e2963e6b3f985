//! OTLP settings: the `otlp:` section of the configuration file with the `--otlp.*` flags laid
//! over it ([`OtlpConfig`]), then the OpenTelemetry environment variables as defaults under both
//! ([`Settings::resolve`]).
//!
//! Precedence, lowest first: built-in defaults, `OTEL_*` variables, the file, the flags. Pushing
//! is on when an endpoint is set anywhere, unless `OTEL_METRICS_EXPORTER` names no `otlp`
//! exporter (`none`) or the file says `enabled: false`. Header values may hold credentials: they
//! are never logged and never shown in an error.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::config::{parse_duration, ConfigError};

/// The default time between two pushes (the OpenTelemetry SDKs' `OTEL_METRIC_EXPORT_INTERVAL`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// The default time one push may take (`OTEL_EXPORTER_OTLP_TIMEOUT`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How batches travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Protocol {
    /// OTLP/gRPC, `MetricsService/Export` (port 4317 by convention).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies, `POST /v1/metrics` (port 4318 by convention).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl Protocol {
    pub fn parse(s: &str) -> Result<Protocol, String> {
        match s.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "http/json" => Err("http/json is not supported; use grpc or http/protobuf".into()),
            other => Err(format!("unknown OTLP protocol {other:?}; use grpc or http/protobuf")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// The `otlp:` section of the configuration file. Every field is optional; flags override it and
/// it overrides the `OTEL_*` variables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// Whether to push. Default: on when an endpoint is set (here, by `--otlp.endpoint` or by
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`), unless
    /// `OTEL_METRICS_EXPORTER=none`.
    pub enabled: Option<bool>,
    /// Base URL of the receiver: `http://collector:4318` for http/protobuf (`/v1/metrics` is
    /// appended), `http://collector:4317` for grpc. `https://` turns TLS on.
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf` (the default, as the OpenTelemetry specification recommends).
    pub protocol: Option<Protocol>,
    /// Time between two pushes [default: 60s].
    #[serde(deserialize_with = "de_opt_duration")]
    pub interval: Option<Duration>,
    /// Time one push may take before it is abandoned and counted as failed [default: 10s].
    #[serde(deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    /// Headers sent with every push, e.g. an API key. Never logged.
    pub headers: BTreeMap<String, String>,
    /// PEM file of the certificate authority that signs the receiver's certificate; default: the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map(Some).map_err(serde::de::Error::custom)
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), message: message.into() }
}

/// Intervals and timeouts are bounded like the sample interval.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

impl OtlpConfig {
    /// Checks what the file and flags say; the environment is checked by [`Settings::resolve`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(e) = &self.endpoint {
            check_endpoint(e).map_err(|m| invalid("otlp.endpoint", m))?;
        }
        for (field, d) in [("otlp.interval", self.interval), ("otlp.timeout", self.timeout)] {
            if d.is_some_and(|d| !(MIN_INTERVAL..=MAX_INTERVAL).contains(&d)) {
                return Err(invalid(field, "must be between 100ms and 1h"));
            }
        }
        for name in self.headers.keys() {
            check_header_name(name).map_err(|m| invalid(format!("otlp.headers.{name}"), m))?;
        }
        for (name, value) in &self.headers {
            if http::HeaderValue::from_str(value).is_err() {
                return Err(invalid(format!("otlp.headers.{name}"), "the value is not a valid HTTP header value"));
            }
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(invalid(
                "otlp.cert_file",
                "a client certificate needs its key (otlp.key_file), and a key its certificate",
            ));
        }
        Ok(())
    }
}

/// Parses one `--otlp.header` flag: `name=value`.
pub fn parse_header_flag(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| "expected NAME=VALUE".to_string())?;
    check_header_name(k.trim())?;
    Ok((k.trim().to_string(), v.to_string()))
}

fn check_header_name(name: &str) -> Result<(), String> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map(|_| ())
        .map_err(|_| format!("{name:?} is not an HTTP header name"))
}

fn check_endpoint(s: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{s:?} must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{s:?} has no host"));
    }
    Ok(uri)
}

/// Everything the pusher needs, resolved once at start.
#[derive(Clone)]
pub struct Settings {
    pub protocol: Protocol,
    /// The URL requests go to: for http/protobuf the full `.../v1/metrics` URL, for grpc the
    /// channel's `scheme://host:port`.
    pub endpoint: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub headers: BTreeMap<String, String>,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, without `service.name` (the app's, per process) and without
    /// the attributes the exporter sets itself per process.
    pub resource_attributes: Vec<(String, String)>,
    /// What the log line at start says about ignored variables, if anything.
    pub notes: Vec<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values are credentials: only their names are shown.
        f.debug_struct("Settings")
            .field("protocol", &self.protocol)
            .field("endpoint", &self.endpoint)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("resource_attributes", &self.resource_attributes)
            .finish()
    }
}

/// Resource attributes the exporter sets per process; `OTEL_RESOURCE_ATTRIBUTES` cannot override
/// them, or every process would claim the same identity.
const PER_PROCESS_ATTRIBUTES: &[&str] = &[
    "service.name",
    "service.instance.id",
    "process.pid",
    "process.creation.time",
    "process.runtime.name",
    "process.runtime.version",
    "process.executable.name",
    "process.owner",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.pod.uid",
    "k8s.container.name",
    "container.id",
];

impl Settings {
    /// Lays the configuration over the `OTEL_*` variables read through `env`. `Ok(None)` when
    /// pushing is off.
    pub fn resolve(config: &OtlpConfig, env: impl Fn(&str) -> Option<String>) -> Result<Option<Settings>, ConfigError> {
        let env = |k: &str| env(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let mut notes = Vec::new();
        if config.enabled == Some(false) {
            return Ok(None);
        }
        if let Some(list) = env("OTEL_METRICS_EXPORTER") {
            let names: Vec<&str> = list.split(',').map(str::trim).collect();
            if !names.contains(&"otlp") {
                if config.enabled == Some(true) {
                    return Err(invalid(
                        "otlp.enabled",
                        format!("is true but OTEL_METRICS_EXPORTER={list} turns OTLP export off"),
                    ));
                }
                return Ok(None);
            }
        }
        let protocol =
            match (config.protocol, env("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"), env("OTEL_EXPORTER_OTLP_PROTOCOL")) {
                (Some(p), _, _) => p,
                (None, Some(v), _) => {
                    Protocol::parse(&v).map_err(|m| invalid("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", m))?
                }
                (None, None, Some(v)) => Protocol::parse(&v).map_err(|m| invalid("OTEL_EXPORTER_OTLP_PROTOCOL", m))?,
                (None, None, None) => Protocol::HttpProtobuf,
            };
        // A base URL gets the signal's path for HTTP; the per-signal variable is used as is, as
        // the specification says.
        let endpoint =
            match (&config.endpoint, env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"), env("OTEL_EXPORTER_OTLP_ENDPOINT")) {
                (Some(e), _, _) => Some(base_endpoint(e, protocol)),
                (None, Some(e), _) => {
                    check_endpoint(&e).map_err(|m| invalid("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", m))?;
                    Some(e)
                }
                (None, None, Some(e)) => {
                    check_endpoint(&e).map_err(|m| invalid("OTEL_EXPORTER_OTLP_ENDPOINT", m))?;
                    Some(base_endpoint(&e, protocol))
                }
                (None, None, None) => None,
            };
        let Some(endpoint) = endpoint else {
            if config.enabled == Some(true) {
                return Err(invalid(
                    "otlp.enabled",
                    "is true but no endpoint is set (otlp.endpoint, --otlp.endpoint or OTEL_EXPORTER_OTLP_ENDPOINT)",
                ));
            }
            return Ok(None);
        };
        let interval = match (config.interval, env("OTEL_METRIC_EXPORT_INTERVAL")) {
            (Some(d), _) => d,
            (None, Some(ms)) => env_millis("OTEL_METRIC_EXPORT_INTERVAL", &ms)?,
            (None, None) => DEFAULT_INTERVAL,
        };
        let timeout =
            match (config.timeout, env("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"), env("OTEL_EXPORTER_OTLP_TIMEOUT")) {
                (Some(d), _, _) => d,
                (None, Some(ms), _) => env_millis("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", &ms)?,
                (None, None, Some(ms)) => env_millis("OTEL_EXPORTER_OTLP_TIMEOUT", &ms)?,
                (None, None, None) => DEFAULT_TIMEOUT,
            };
        let mut headers = BTreeMap::new();
        let header_var = ["OTEL_EXPORTER_OTLP_METRICS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"]
            .into_iter()
            .find_map(|k| env(k).map(|v| (k, v)));
        if let Some((var, list)) = header_var {
            for (k, v) in parse_w3c_list(&list) {
                check_header_name(&k).map_err(|m| invalid(var, m))?;
                if http::HeaderValue::from_str(&v).is_err() {
                    return Err(invalid(var, format!("the value of header {k} is not a valid HTTP header value")));
                }
                headers.insert(k.to_ascii_lowercase(), v);
            }
        }
        for (k, v) in &config.headers {
            headers.insert(k.to_ascii_lowercase(), v.clone());
        }
        let env_path = |k: &str| env(k).map(PathBuf::from);
        let ca_file = config.ca_file.clone().or_else(|| {
            env_path("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE").or_else(|| env_path("OTEL_EXPORTER_OTLP_CERTIFICATE"))
        });
        let client_cert = match (&config.cert_file, &config.key_file) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            _ => {
                let cert = env_path("OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE")
                    .or_else(|| env_path("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"));
                let key = env_path("OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY")
                    .or_else(|| env_path("OTEL_EXPORTER_OTLP_CLIENT_KEY"));
                match (cert, key) {
                    (Some(c), Some(k)) => Some((c, k)),
                    (None, None) => None,
                    _ => return Err(invalid(
                        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                        "a client certificate needs its key (OTEL_EXPORTER_OTLP_CLIENT_KEY), and a key its certificate",
                    )),
                }
            }
        };
        if (ca_file.is_some() || client_cert.is_some()) && !endpoint.starts_with("https://") {
            notes.push("a CA or client certificate is set but the endpoint is not https://: TLS is not used".into());
        }
        let mut resource_attributes = Vec::new();
        if let Some(list) = env("OTEL_RESOURCE_ATTRIBUTES") {
            for (k, v) in parse_w3c_list(&list) {
                if PER_PROCESS_ATTRIBUTES.contains(&k.as_str()) {
                    notes.push(format!(
                        "OTEL_RESOURCE_ATTRIBUTES: {k} is set per watched process and is not overridden"
                    ));
                } else {
                    resource_attributes.push((k, v));
                }
            }
        }
        if env("OTEL_SERVICE_NAME").is_some() {
            notes.push("OTEL_SERVICE_NAME is not applied: service.name is each watched app's name".into());
        }
        if env("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE")
            .is_some_and(|v| !v.eq_ignore_ascii_case("cumulative"))
        {
            notes.push(
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE is not applied: counters are cumulative".into(),
            );
        }
        if env("OTEL_EXPORTER_OTLP_COMPRESSION").is_some() || env("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION").is_some() {
            notes.push("OTEL_EXPORTER_OTLP_COMPRESSION is not supported: requests are sent uncompressed".into());
        }
        Ok(Some(Settings {
            protocol,
            endpoint,
            interval,
            timeout,
            headers,
            ca_file,
            client_cert,
            resource_attributes,
            notes,
        }))
    }
}

/// A base endpoint made into the URL requests go to: `/v1/metrics` appended for HTTP.
fn base_endpoint(base: &str, protocol: Protocol) -> String {
    match protocol {
        Protocol::Grpc => base.to_string(),
        Protocol::HttpProtobuf => format!("{}/v1/metrics", base.trim_end_matches('/')),
    }
}

fn env_millis(var: &str, value: &str) -> Result<Duration, ConfigError> {
    let ms: u64 = value.parse().map_err(|_| invalid(var, format!("{value:?} is not a number of milliseconds")))?;
    let d = Duration::from_millis(ms);
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&d) {
        return Err(invalid(var, "must be between 100 and 3600000 milliseconds"));
    }
    Ok(d)
}

/// Parses the `key1=value1,key2=value2` lists of `OTEL_EXPORTER_OTLP_HEADERS` and
/// `OTEL_RESOURCE_ATTRIBUTES` (W3C Baggage without properties): values are percent-decoded,
/// entries without `=` are skipped.
pub fn parse_w3c_list(list: &str) -> Vec<(String, String)> {
    list.split(',')
        .filter_map(|entry| {
            let (k, v) = entry.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (percent_decode(k), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    fn resolve(config: &OtlpConfig, vars: &[(&str, &str)]) -> Result<Option<Settings>, ConfigError> {
        Settings::resolve(config, env_of(vars))
    }

    #[test]
    fn off_without_an_endpoint() {
        assert!(resolve(&OtlpConfig::default(), &[]).unwrap().is_none());
        assert!(resolve(&OtlpConfig::default(), &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap().is_none());
        let on = OtlpConfig { enabled: Some(true), ..OtlpConfig::default() };
        assert!(resolve(&on, &[]).unwrap_err().to_string().starts_with("otlp.enabled"));
    }

    #[test]
    fn on_from_the_environment_with_the_specification_defaults() {
        let s = resolve(&OtlpConfig::default(), &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]).unwrap().unwrap();
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(s.endpoint, "http://c:4318/v1/metrics");
        assert_eq!((s.interval, s.timeout), (DEFAULT_INTERVAL, DEFAULT_TIMEOUT));
        let s = resolve(
            &OtlpConfig::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:9/custom"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "15000"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://m:9/custom", "the per-signal endpoint is used as is");
        assert_eq!((s.interval, s.timeout), (Duration::from_secs(15), Duration::from_millis(2500)));
        let s = resolve(
            &OtlpConfig::default(),
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
        )
        .unwrap()
        .unwrap();
        assert_eq!((s.protocol, s.endpoint.as_str()), (Protocol::Grpc, "http://c:4317"));
    }

    #[test]
    fn none_turns_it_off() {
        let vars = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_METRICS_EXPORTER", "none")];
        assert!(resolve(&OtlpConfig::default(), &vars).unwrap().is_none());
        let flagged = OtlpConfig { endpoint: Some("http://x:1".into()), ..OtlpConfig::default() };
        assert!(resolve(&flagged, &vars).unwrap().is_none());
        let vars = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_METRICS_EXPORTER", "prometheus,otlp")];
        assert!(resolve(&OtlpConfig::default(), &vars).unwrap().is_some());
        let off = OtlpConfig { enabled: Some(false), endpoint: Some("http://x:1".into()), ..OtlpConfig::default() };
        assert!(resolve(&off, &[]).unwrap().is_none());
    }

    #[test]
    fn the_configuration_overrides_the_environment() {
        let config = OtlpConfig {
            endpoint: Some("https://flag:4317".into()),
            protocol: Some(Protocol::Grpc),
            interval: Some(Duration::from_secs(1)),
            headers: [("Authorization".to_string(), "Bearer flag".to_string())].into(),
            ..OtlpConfig::default()
        };
        let s = resolve(
            &config,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "30000"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20env,x-tenant=a%2Cb"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (s.protocol, s.endpoint.as_str(), s.interval),
            (Protocol::Grpc, "https://flag:4317", Duration::from_secs(1))
        );
        assert_eq!(s.headers.get("authorization").unwrap(), "Bearer flag");
        assert_eq!(s.headers.get("x-tenant").unwrap(), "a,b");
        assert!(!format!("{s:?}").contains("Bearer"), "header values are never shown");
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1m"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "bad header=x"),
        ] {
            let err = resolve(&OtlpConfig::default(), &[base, (var, value)]).unwrap_err().to_string();
            assert!(err.starts_with(var), "{err}");
        }
        let err = resolve(&OtlpConfig::default(), &[("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4318")]).unwrap_err();
        assert!(err.to_string().starts_with("OTEL_EXPORTER_OTLP_ENDPOINT"), "{err}");
    }

    #[test]
    fn resource_attributes_keep_per_process_identity() {
        let s = resolve(
            &OtlpConfig::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,service.name=exporter,host.name=node-1"),
                ("OTEL_SERVICE_NAME", "exporter"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            s.resource_attributes,
            vec![("deployment.environment.name".into(), "prod".into()), ("host.name".into(), "node-1".into())]
        );
        assert_eq!(s.notes.len(), 2, "{:?}", s.notes);
    }

    #[test]
    fn file_values_are_checked() {
        let c: OtlpConfig = yaml_serde::from_str("endpoint: http://c:4318\nprotocol: grpc\ninterval: 5s\n").unwrap();
        c.validate().unwrap();
        assert!(yaml_serde::from_str::<OtlpConfig>("protocol: http/json\n").is_err());
        assert!(yaml_serde::from_str::<OtlpConfig>("endpont: x\n").is_err());
        let c: OtlpConfig = yaml_serde::from_str("endpoint: collector:4318\n").unwrap();
        assert!(c.validate().unwrap_err().to_string().starts_with("otlp.endpoint"));
        let c: OtlpConfig = yaml_serde::from_str("cert_file: /c.pem\n").unwrap();
        assert!(c.validate().unwrap_err().to_string().starts_with("otlp.cert_file"));
        assert_eq!(parse_header_flag("X-Key=a=b").unwrap(), ("X-Key".into(), "a=b".into()));
        assert!(parse_header_flag("novalue").is_err());
    }
}
