//! Alert rules: the shipped rule file is generated from the chart's one parameter source, passes
//! `promtool check rules` and the promtool unit tests under alerts/tests/, and the example
//! Alertmanager configuration passes `amtool check-config`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util;

const TEMPLATE: &str = "helm/nodejs-leak-exporter/files/rules.tmpl.yaml";
const VALUES: &str = "helm/nodejs-leak-exporter/values.yaml";
pub const SHIPPED: &str = "alerts/nodejs-leak-exporter.rules.yml";

/// The chart's default rule parameters (`prometheusRule.params`), in file order.
pub fn default_params() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(util::repo().join(VALUES)).expect("read values.yaml");
    let values: yaml_serde::Value = yaml_serde::from_str(&text).expect("values.yaml parses");
    let params = values["prometheusRule"]["params"].as_mapping().expect("prometheusRule.params is a map");
    params
        .iter()
        .map(|(k, v)| {
            let key = k.as_str().expect("string keys").to_string();
            let value = match v {
                yaml_serde::Value::String(s) => s.clone(),
                other => panic!("prometheusRule.params.{key} must be a string (it renders as written): {other:?}"),
            };
            (key, value)
        })
        .collect()
}

/// The rule template with the parameters substituted, as the chart's PrometheusRule template
/// does it: every `${name}` replaced, nothing else. `overrides` replace defaults (test variants).
pub fn render_rules(overrides: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(util::repo().join(TEMPLATE)).expect("read the rule template");
    for (k, v) in default_params() {
        let v = overrides.iter().find(|(o, _)| *o == k).map(|(_, o)| o.to_string()).unwrap_or(v);
        text = text.replace(&format!("${{{k}}}"), &v);
    }
    if let Some(i) = text.find("${") {
        panic!("{TEMPLATE}: no parameter for {}", &text[i..text[i..].find('}').map_or(text.len(), |e| i + e + 1)]);
    }
    text
}

fn promtool(args: &[&str], dir: &Path) -> Option<String> {
    let promtool = util::require_tool("promtool")?;
    let out = Command::new(promtool).args(args).current_dir(dir).output().expect("run promtool");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}:\n{report}");
    Some(report)
}

#[test]
fn shipped_rules_are_generated_from_the_chart_parameters() {
    let rendered = render_rules(&[]);
    let path = util::repo().join(SHIPPED);
    if std::env::var_os("UPDATE_ALERTS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let shipped = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        shipped == rendered,
        "{SHIPPED} is not the rendering of {TEMPLATE} with {VALUES}'s prometheusRule.params; \
         regenerate it with: UPDATE_ALERTS=1 cargo test --test it -- alerts::shipped"
    );
}

#[test]
fn shipped_rules_pass_promtool_check() {
    let Some(report) = promtool(&["check", "rules", SHIPPED], &util::repo()) else { return };
    assert!(report.contains("SUCCESS"), "{report}");
}

#[test]
fn every_alert_has_severity_summary_description_and_runbook() {
    let rules: yaml_serde::Value = yaml_serde::from_str(&render_rules(&[])).unwrap();
    let mut alerts = 0;
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let Some(name) = rule["alert"].as_str() else { continue };
            alerts += 1;
            let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
            assert!(["critical", "warning"].contains(&severity), "{name}: severity {severity:?}");
            for key in ["summary", "description"] {
                let text = rule["annotations"][key].as_str().unwrap_or_default();
                assert!(
                    text.contains("$labels.app") || text.contains("$labels.instance"),
                    "{name}: {key} names nothing"
                );
            }
            let runbook = rule["annotations"]["runbook_url"].as_str().unwrap_or_default();
            let file = runbook.rsplit('/').next().unwrap();
            assert!(
                runbook.contains("docs/runbooks/") && util::repo().join("docs/runbooks").join(file).is_file(),
                "{name}: runbook_url {runbook:?} is not a file under docs/runbooks/"
            );
        }
    }
    assert!(alerts >= 12, "{alerts} alerts");
}

#[test]
fn promtool_unit_tests_pass() {
    let dir = util::repo().join("alerts");
    let tests: Vec<PathBuf> = std::fs::read_dir(dir.join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    assert!(!tests.is_empty());
    let mut args = vec!["test".to_string(), "rules".to_string()];
    args.extend(tests.iter().map(|p| p.strip_prefix(&dir).unwrap().display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    promtool(&args, &dir);
}

#[test]
fn example_alertmanager_configuration_passes_amtool() {
    let Some(amtool) = util::require_tool("amtool") else { return };
    let out = Command::new(amtool)
        .args(["check-config", "alerts/alertmanager.example.yml"])
        .current_dir(util::repo())
        .output()
        .expect("run amtool");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "amtool check-config:\n{report}");
}

/// The example Alertmanager configuration, pointed at `receiver` and with short group timings:
/// only URLs, the key file and timings change.
fn alertmanager_variant(receiver: &crate::prom::Receiver, key_file: &Path) -> String {
    let text = std::fs::read_to_string(util::repo().join("alerts/alertmanager.example.yml")).unwrap();
    let mut config: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    let timings = |route: &mut yaml_serde::Value| {
        for (k, v) in [("group_wait", "1s"), ("group_interval", "2s"), ("repeat_interval", "1h")] {
            if route.get(k).is_some() {
                route[k] = yaml_serde::Value::String(v.into());
            }
        }
    };
    timings(&mut config["route"]);
    for route in config["route"]["routes"].as_sequence_mut().unwrap() {
        timings(route);
    }
    for r in config["receivers"].as_sequence_mut().unwrap() {
        if let Some(pd) = r.get_mut("pagerduty_configs").and_then(|v| v.as_sequence_mut()) {
            pd[0]["url"] = receiver.url("/v2/enqueue").into();
            pd[0]["routing_key_file"] = key_file.display().to_string().into();
        }
        if let Some(hooks) = r.get_mut("webhook_configs").and_then(|v| v.as_sequence_mut()) {
            hooks[0]["url"] = receiver.url("/chat").into();
        }
    }
    yaml_serde::to_string(&config).unwrap()
}

/// A leaking app and its fixed twin → the exporter → a real Prometheus loading the shipped rules
/// (with `for:` shortened) → a real Alertmanager with the example routing → PagerDuty's Events
/// API, played by a local receiver: the leak pages with its summary, the twin never does.
#[test]
fn a_heap_leak_pages_through_alertmanager_and_its_fixed_twin_does_not() {
    let Some(node) = util::node() else { return };
    if util::require_tool("prometheus").is_none() || util::require_tool("prometheus-alertmanager").is_none() {
        return;
    }
    // Two names for the same fixture, so the two apps have their own `app` label.
    let apps = tempfile::tempdir().unwrap();
    let mut started = Vec::new();
    for (name, args) in
        [("orders-leaky.js", ["leak=map", "leak_bytes=2000"]), ("orders-fixed.js", ["leak=none", "cache_max=500"])]
    {
        let script = apps.path().join(name);
        std::os::unix::fs::symlink(util::fixture_app("service.js"), &script).unwrap();
        let mut cmd = Command::new(&node);
        cmd.args(["--expose-gc", "--inspect=127.0.0.1:0"]).arg(&script).args(args).arg("gc_every=500");
        started.push(util::NodeApp::start(cmd));
    }
    let (leaky, fixed) = (&started[0], &started[1]);
    let exporter = util::Exporter::start_for(
        &[leaky.pid, fixed.pid],
        &[
            "--sample.interval=250ms",
            "--leak.window=30s",
            "--leak.window=90s",
            "--leak.grace-period=60s",
            "--no-collector.logs",
        ],
    );

    let receiver = crate::prom::Receiver::start();
    let (_key_dir, key_file) = crate::prom::temp_file("routing-key", "test-routing-key-0123456789\n");
    let Some(am) = crate::prom::alertmanager(&alertmanager_variant(&receiver, &key_file)) else { return };
    let rules = render_rules(&[
        ("heap_leak_for", "5s"),
        ("native_leak_for", "5s"),
        ("handle_leak_for", "5s"),
        ("eta_for", "5s"),
        ("inspector_lost_for", "5s"),
    ]);
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{}']\n\
         scrape_configs:\n  - job_name: nodejs-leak-exporter\n    static_configs:\n      - targets: ['{}']\n",
        am.addr, exporter.addr
    );
    let Some(prometheus) = crate::prom::prometheus(&config, &[("rules.yml", &rules)]) else { return };

    let page = util::wait_for("a PagerDuty trigger for orders-leaky.js", Duration::from_secs(300), || {
        receiver.bodies("/v2/enqueue").into_iter().find(|e| {
            e["event_action"] == "trigger"
                && e["payload"]["summary"].as_str().is_some_and(|s| s.contains("orders-leaky.js"))
        })
    });
    let summary = page["payload"]["summary"].as_str().unwrap();
    assert!(summary.starts_with(&format!("Heap leak in orders-leaky.js (pid {})", leaky.pid)), "{page:#}");
    assert_eq!(page["routing_key"], "test-routing-key-0123456789", "{page:#}");
    assert_eq!(page["payload"]["severity"], "critical", "{page:#}");
    let details = page["payload"]["custom_details"]["firing"].as_str().unwrap_or_default();
    assert!(
        details.contains("NodejsHeapLeak") && details.contains("B/s") && details.contains("runbooks/NodejsHeapLeak.md"),
        "{page:#}"
    );

    // The twin ran the same time under the same rules: give the pipeline a few more evaluation
    // and group intervals, then nothing may have paged for it, and its heap verdict is 0.
    let quiet_until = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < quiet_until {
        std::thread::sleep(Duration::from_millis(500));
    }
    let fixed_pages: Vec<_> =
        receiver.bodies("/v2/enqueue").into_iter().filter(|e| e.to_string().contains("orders-fixed.js")).collect();
    assert!(fixed_pages.is_empty(), "the fixed twin paged: {fixed_pages:#?}");
    let verdict =
        crate::prom::query(&prometheus, "nodejs_leak_suspected{app=\"orders-fixed.js\",signal=\"heap_used\"}");
    assert!(!verdict.is_empty() && verdict.iter().all(|s| s["value"][1] == "0"), "{verdict:?}");
    drop((prometheus, am, exporter, started));
}

/// One corpus trace for the rules: its name, and the alert and signal it must fire (none: a
/// healthy trace, on which nothing may ever fire).
struct CorpusCase {
    name: String,
    trace: nodejs_leak_exporter::trace::Trace,
    fires: Option<(&'static str, &'static str)>,
}

fn alert_for(signal: nodejs_leak_exporter::leak::Signal) -> &'static str {
    use nodejs_leak_exporter::leak::Signal;
    match signal {
        Signal::HeapUsed => "NodejsHeapLeak",
        Signal::Rss | Signal::External => "NodejsNativeMemoryLeak",
        Signal::OpenFds | Signal::Sockets | Signal::ActiveResources => "NodejsHandleLeak",
    }
}

/// The labelled corpus (tests/corpus/) through `analyze --output promtool` and the shipped
/// rules under `promtool test rules`: each leak's alert fires by the end of its trace, and no
/// alert ever fires on a healthy one — the recorded apps, a day assembled from each healthy
/// recording, and healthy days drawn with this run's corpus seed.
#[test]
fn corpus_traces_through_analyze_fire_on_the_leaks_and_never_on_healthy_ones() {
    use crate::corpus::{self, synth};
    let Some(promtool) = util::require_tool("promtool") else { return };
    const DAY: f64 = 24.0 * 3600.0;
    let mut cases = Vec::new();
    for (name, signals) in corpus::RECORDED_LEAKS {
        let fires = Some((alert_for(signals[0]), signals[0].as_label()));
        cases.push(CorpusCase { name: name.into(), trace: corpus::recorded(name), fires });
    }
    for name in corpus::RECORDED_HEALTHY {
        cases.push(CorpusCase { name: name.into(), trace: corpus::recorded(name), fires: None });
        cases.push(CorpusCase { name: format!("day-{name}"), trace: corpus::assembled_day(name), fires: None });
    }
    for i in 0..2 {
        let p = synth::Params::healthy(corpus::draw(70, i), DAY);
        cases.push(CorpusCase { name: format!("synthetic {}", p.describe()), trace: synth::generate(&p), fires: None });
    }
    // 1 MiB/min under a 50 MiB sawtooth with a full GC every 30 s, from the start.
    let p = synth::target_case(corpus::draw(71, 0), 3.0 * 3600.0, true, 50.0, 30.0, 1.0, 0.0);
    cases.push(CorpusCase {
        name: format!("synthetic {}", p.describe()),
        trace: synth::generate(&p),
        fires: Some(("NodejsHeapLeak", "heap_used")),
    });

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(util::repo().join(SHIPPED), dir.path().join("rules.yml")).unwrap();
    for (i, case) in cases.iter().enumerate() {
        let csv = dir.path().join(format!("trace-{i}.csv"));
        std::fs::write(&csv, nodejs_leak_exporter::trace::to_csv(&case.trace)).unwrap();
        let labels = format!("job=\"nodejs\",app=\"trace-{i}\",pid=\"1\"");
        let out = Command::new(util::exporter_bin())
            .args(["analyze", csv.to_str().unwrap(), "--output", "promtool", "--labels", &labels])
            .output()
            .expect("run analyze");
        assert!(out.status.success(), "{}: analyze failed: {}", case.name, String::from_utf8_lossy(&out.stderr));
        let series = String::from_utf8(out.stdout).unwrap();
        let samples = &case.trace.samples;
        let minutes = ((samples.last().unwrap().time - samples[0].time) / 60.0).floor() as u64;
        let span = format!("{}m", minutes + 1);
        let check = match case.fires {
            Some((alert, signal)) => format!(
                "    promql_expr_test:\n\
                 \x20     - expr: ALERTS{{alertstate=\"firing\"}}\n\
                 \x20       eval_time: 5m\n\
                 \x20       exp_samples: []\n\
                 \x20     - expr: max by (alertname, signal) (ALERTS{{alertstate=\"firing\",alertname=\"{alert}\",signal=\"{signal}\"}})\n\
                 \x20       eval_time: {minutes}m\n\
                 \x20       exp_samples:\n\
                 \x20         - labels: '{{alertname=\"{alert}\",signal=\"{signal}\"}}'\n\
                 \x20           value: 1\n"
            ),
            // Every alert that fired at any evaluation stays in ALERTS' history.
            None => format!(
                "    promql_expr_test:\n\
                 \x20     - expr: count_over_time(ALERTS{{alertstate=\"firing\"}}[{span}])\n\
                 \x20       eval_time: {minutes}m\n\
                 \x20       exp_samples: []\n"
            ),
        };
        let test = format!("rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n{series}{check}");
        let file = dir.path().join(format!("trace-{i}.test.yml"));
        std::fs::write(&file, &test).unwrap();
        let out = Command::new(&promtool).args(["test", "rules"]).arg(&file).current_dir(dir.path()).output().unwrap();
        assert!(
            out.status.success(),
            "{}: promtool test rules failed (expected {:?}):\n{}{}",
            case.name,
            case.fires,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
