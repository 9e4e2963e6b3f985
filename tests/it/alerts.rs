//! Alert rules: the shipped rule file is generated from the chart's one parameter source, passes
//! `promtool check rules` and the promtool unit tests under alerts/tests/, and the example
//! Alertmanager configuration passes `amtool check-config`.

use std::path::{Path, PathBuf};
use std::process::Command;

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
                assert!(text.contains("$labels.app") || text.contains("$labels.instance"), "{name}: {key} names nothing");
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
