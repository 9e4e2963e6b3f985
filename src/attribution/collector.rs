//! The `attribution` collector (off by default): profiles each process while its heap verdict
//! (`nodejs_leak_suspected{signal="heap_used"}`) is positive, through a [`Manager`], and exports
//! the fastest-growing allocation sites of each as `nodejs_heap_live_bytes{site}` and
//! `nodejs_heap_live_growth_bytes_per_second{site}`, at most `top_sites` per process. It reads the
//! verdict the previous sample left on each target and starts or stops runs at the start of the
//! next, so profiling never runs inside a sample; sampling stops when the verdict clears, the
//! process goes, and at shutdown.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::manager::{Manager, ManagerSettings};
use crate::collect::{Collector, Context, Outcome, Report};
use crate::discovery::ProcessKey;
use crate::exposition::Families;
use crate::leak::Signal;
use crate::target::Target;

/// `collectors.attribution` in the configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttributionConfig {
    /// Whether processes whose heap verdict is positive are profiled (`--collector.attribution`).
    pub enabled: bool,
    /// Average bytes allocated between two samples of V8's sampling heap profiler, 1024 to
    /// 67108864: smaller sees slower leaks sooner and costs the app more.
    pub interval_bytes: u64,
    /// Time between two profiles of a process.
    #[serde(deserialize_with = "de_duration")]
    pub every: Duration,
    /// Processes profiled at once; the others wait for a turn (1 to 16).
    pub max_concurrent: usize,
    /// Growing sites exported per process (1 to 20): the metric's cardinality.
    pub top_sites: usize,
}

impl Default for AttributionConfig {
    fn default() -> Self {
        AttributionConfig {
            enabled: false,
            interval_bytes: super::DEFAULT_INTERVAL,
            every: Duration::from_secs(30),
            max_concurrent: 2,
            top_sites: 5,
        }
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    crate::config::parse_duration(&s).map_err(serde::de::Error::custom)
}

impl AttributionConfig {
    /// The first field out of its bounds, with why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(super::MIN_INTERVAL..=super::MAX_INTERVAL).contains(&self.interval_bytes) {
            return Err((
                "collectors.attribution.interval_bytes",
                format!("must be between {} and {}", super::MIN_INTERVAL, super::MAX_INTERVAL),
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.every) {
            return Err(("collectors.attribution.every", "must be between 1s and 1h".into()));
        }
        if !(1..=16).contains(&self.max_concurrent) {
            return Err(("collectors.attribution.max_concurrent", "must be between 1 and 16".into()));
        }
        if !(1..=20).contains(&self.top_sites) {
            return Err(("collectors.attribution.top_sites", "must be between 1 and 20".into()));
        }
        Ok(())
    }
}

pub struct AttributionCollector {
    manager: std::sync::Arc<Manager>,
    top: usize,
    /// Seen in the sample going on, for the next one.
    watched: Vec<ProcessKey>,
    leaking: Vec<ProcessKey>,
}

impl AttributionCollector {
    pub fn new(config: &crate::config::Config, ctx: &Context) -> Self {
        let a = &config.collectors.attribution;
        let i = &config.collectors.inspector;
        let settings = ManagerSettings {
            procfs: config.paths.procfs.clone(),
            ports: i.ports.clone(),
            allowed_addresses: i.allowed_addresses.clone(),
            connect_timeout: i.connect_timeout,
            interval: a.interval_bytes,
            every: a.every,
            max_concurrent: a.max_concurrent,
            top: a.top_sites,
            ..ManagerSettings::default()
        };
        let manager = std::sync::Arc::new(Manager::new(ctx.runtime.clone(), ctx.connector.clone(), settings));
        super::manager::make_current(&manager);
        AttributionCollector { manager, top: a.top_sites, watched: Vec::new(), leaking: Vec::new() }
    }
}

impl Collector for AttributionCollector {
    fn name(&self) -> &'static str {
        "attribution"
    }

    fn begin_sample(&mut self) {
        let watched = std::mem::take(&mut self.watched);
        let leaking = std::mem::take(&mut self.leaking);
        self.manager.retain(&watched);
        self.manager.update_leaking(&leaking);
    }

    fn collect(&mut self, target: &mut Target) -> Outcome {
        self.watched.push(target.key);
        if target.leak.as_ref().is_some_and(|l| l.suspected(Signal::HeapUsed)) {
            self.leaking.push(target.key);
        }
        Outcome::Read(Report::default())
    }

    fn collect_exited(&mut self, _target: &mut Target) {}

    fn shutdown(&mut self) {
        self.manager.shutdown(Duration::from_secs(3));
    }

    fn render(&self, targets: &[&Target], out: &mut Families) {
        for (key, growing) in self.manager.growing(self.top) {
            let Some(t) = targets.iter().find(|t| t.key == key) else { continue };
            for g in growing {
                let site = site_label(&g.function, &g.location);
                out.target_gauge(
                    t,
                    "nodejs_heap_live_bytes",
                    "Live bytes V8's sampling heap profiler attributes to a growing allocation site (the innermost function of the app's code on the stack), while the heap verdict is positive.",
                    &[("site", &site)],
                    g.live_bytes as f64,
                );
                out.target_gauge(
                    t,
                    "nodejs_heap_live_growth_bytes_per_second",
                    "Growth of the live bytes of a growing allocation site across successive sampling heap profiles (Theil-Sen), while the heap verdict is positive.",
                    &[("site", &site)],
                    g.growth_bytes_per_second,
                );
            }
        }
    }
}

/// `function file:line`, the file reduced to its last two path components, at most 128
/// characters: bounded, and readable in a legend.
pub fn site_label(function: &str, location: &str) -> String {
    let short = location.rsplitn(3, '/').take(2).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("/");
    crate::discovery::sanitize_label(&format!("{function} {short}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_labels_are_short() {
        assert_eq!(site_label("onRequest", "/srv/app/lib/server.js:33"), "onRequest lib/server.js:33");
        assert_eq!(site_label("f", "app.js:1"), "f app.js:1");
        assert_eq!(
            site_label("parserOnHeadersComplete", "node:_http_common:71"),
            "parserOnHeadersComplete node:_http_common:71"
        );
        assert!(site_label(&"x".repeat(500), "/a.js:1").chars().count() <= 128);
    }

    #[test]
    fn configuration_is_bounded() {
        assert!(AttributionConfig::default().validate().is_ok());
        let bad = AttributionConfig { interval_bytes: 10, ..AttributionConfig::default() };
        assert_eq!(bad.validate().unwrap_err().0, "collectors.attribution.interval_bytes");
        let bad = AttributionConfig { top_sites: 100, ..AttributionConfig::default() };
        assert_eq!(bad.validate().unwrap_err().0, "collectors.attribution.top_sites");
        let c: AttributionConfig = yaml_serde::from_str("enabled: true\nevery: 10s\n").unwrap();
        assert_eq!((c.enabled, c.every), (true, Duration::from_secs(10)));
        assert!(yaml_serde::from_str::<AttributionConfig>("nope: 1\n").is_err());
    }
}
