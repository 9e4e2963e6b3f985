//! The Helm chart, with the real helm (target/tools/helm, from scripts/install-test-deps.sh):
//! `helm lint --strict` and `helm template` for the default values and every `ci/*-values.yaml`,
//! every rendered resource validated against the Kubernetes schemas (`kubernetes-validate
//! --strict`) or the Prometheus operator's (`helm/tests/validate-monitoring.py`), and a kind with
//! no schema failing; bad values refused by `values.schema.json`; the PrometheusRule equal to
//! `alerts/` at the default parameters and following a changed one; the DaemonSet granting exactly
//! the capabilities of `crate::privileges`, with read-only host mounts; the dashboards' ConfigMaps
//! holding `dashboards/*.json`, also from the packaged chart; the sidecar example running the
//! chart's sidecar container; the Dockerfile building the binary and tag the chart names; the web
//! configuration (TLS, basic auth) in a mounted Secret with HTTPS probes and the monitors' scrape
//! credentials; heap snapshots in the configuration file with a writable directory, `NODE_NAME`
//! and the NetworkPolicy rule between exporter pods; and the real exporter started with the
//! arguments, environment and mounted files each rendering gives it, serving HTTPS with basic
//! auth where the rendering asks for it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use yaml_serde::Value;

use crate::privileges::{CHART_ACTIVATE_CAPABILITIES, CHART_DAEMONSET_CAPABILITIES, CHART_ENTER_NETNS_CAPABILITIES};
use crate::util;

const CHART: &str = "helm/nodejs-leak-exporter";
const SIDECAR_EXAMPLE: &str = "examples/kubernetes/sidecar-deployment.yaml";
/// The Kubernetes version the rendered manifests are validated against (that of the kubectl layer
/// helm comes from).
const KUBERNETES_VERSION: &str = "1.33.0";
const SCHEMA_ERROR: &str = "values don't meet the specifications of the schema";
/// A bcrypt hash, of "changeme".
const HASH: &str = "$2b$10$5wSEZApxKRJNkVkjYvrrZOwMv6oc85Cz.2H7.jbiyRCI8BEq/Q9ea";

/// A tool installed under target/ by scripts/install-test-deps.sh: missing is a failure under
/// CI=true, a skip elsewhere.
fn installed(relative: &str) -> Option<PathBuf> {
    let path = util::repo().join(relative);
    if path.is_file() {
        return Some(path);
    }
    assert!(!util::ci(), "{relative} is required under CI=true but missing; run scripts/install-test-deps.sh");
    eprintln!("SKIP: {relative} not installed (scripts/install-test-deps.sh installs it)");
    None
}

fn helm() -> Option<PathBuf> {
    installed("target/tools/helm")
}

/// helm, kubernetes-validate and the venv's python (for the operator schemas).
struct Tools {
    helm: PathBuf,
    kubernetes_validate: PathBuf,
    python: PathBuf,
}

fn tools() -> Option<Tools> {
    Some(Tools {
        helm: helm()?,
        kubernetes_validate: installed("target/py/bin/kubernetes-validate")?,
        python: installed("target/py/bin/python")?,
    })
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The chart's ci/*-values.yaml files, sorted.
fn ci_values() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(util::repo().join(CHART).join("ci"))
        .expect("the chart has a ci/ directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{} ci values files", files.len());
    files
}

/// `helm template` of `chart` with these arguments (`-f FILE`, `--set k=v`, ...): the rendered
/// resources, or helm's error output.
fn template_chart(helm: &Path, chart: &Path, args: &[&str]) -> Result<Vec<Value>, String> {
    let out = run(Command::new(helm)
        .args(["template", "nle", &chart.to_string_lossy(), "--namespace", "monitoring"])
        .args(args)
        .current_dir(util::repo()));
    if !out.status.success() {
        return Err(text(&out));
    }
    let stdout = String::from_utf8(out.stdout).expect("helm prints UTF-8");
    let mut docs = Vec::new();
    for doc in yaml_serde::Deserializer::from_str(&stdout) {
        let value: Value =
            serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("helm output: {e}\n{stdout}"));
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn template(helm: &Path, args: &[&str]) -> Vec<Value> {
    template_chart(helm, &util::repo().join(CHART), args).unwrap_or_else(|e| panic!("helm template {args:?}:\n{e}"))
}

fn kinds(docs: &[Value]) -> Vec<&str> {
    docs.iter().map(|d| d["kind"].as_str().unwrap_or("")).collect()
}

/// The one resource of this kind.
fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect();
    assert_eq!(found.len(), 1, "expected one {kind} in {:?}", kinds(docs));
    found[0]
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| s.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default()
}

fn yaml_file(relative: &str) -> Value {
    let text = std::fs::read_to_string(util::repo().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"));
    yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn to_json(value: &Value) -> serde_json::Value {
    serde_json::to_value(value).expect("YAML to JSON")
}

/// Validates rendered resources: the built-in kinds with `kubernetes-validate --strict` at
/// [`KUBERNETES_VERSION`], the monitoring.coreos.com kinds with helm/tests/validate-monitoring.py.
/// Every resource must be reported as passing by one of them: kubernetes-validate only warns of a
/// kind it has no schema for, and that is a failure here.
fn validate(tools: &Tools, docs: &[Value]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let (mut builtin, mut monitoring) = (Vec::new(), Vec::new());
    for (i, doc) in docs.iter().enumerate() {
        let kind = doc["kind"].as_str().unwrap_or("none");
        let path = dir.path().join(format!("{i:02}-{}.json", kind.to_lowercase()));
        std::fs::write(&path, serde_json::to_string_pretty(&to_json(doc)).unwrap()).unwrap();
        let group = doc["apiVersion"].as_str().unwrap_or_default();
        if group.starts_with("monitoring.coreos.com/") {
            monitoring.push(path);
        } else {
            builtin.push(path);
        }
    }
    let mut failures = String::new();
    if !builtin.is_empty() {
        let out = run(Command::new(&tools.kubernetes_validate)
            .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
            .args(&builtin));
        let report = text(&out);
        for path in &builtin {
            let passed = format!("INFO {} passed", path.display());
            if !report.lines().any(|l| l.starts_with(&passed)) {
                failures.push_str(&format!("{} not validated by kubernetes-validate\n", path.display()));
            }
        }
        if !out.status.success() || report.lines().any(|l| !l.starts_with("INFO ")) {
            failures.push_str(&report);
        }
    }
    if !monitoring.is_empty() {
        let script = util::repo().join("helm/tests/validate-monitoring.py");
        let out = run(Command::new(&tools.python).arg(script).args(&monitoring));
        let report = text(&out);
        for path in &monitoring {
            if !report.lines().any(|l| l.starts_with(&format!("OK {}:", path.display()))) {
                failures.push_str(&format!("{} not validated against the operator's schemas\n", path.display()));
            }
        }
        if !out.status.success() {
            failures.push_str(&report);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        // The documents, for the reader of the failure.
        for (i, doc) in docs.iter().enumerate() {
            failures.push_str(&format!("--- {i:02}\n{}", yaml_serde::to_string(doc).unwrap()));
        }
        Err(failures)
    }
}

#[test]
fn lint_passes_strict_for_the_defaults_and_every_ci_values_file() {
    let Some(helm) = helm() else { return };
    let mut runs: Vec<Vec<String>> = vec![vec![]];
    runs.extend(ci_values().iter().map(|f| vec!["-f".to_string(), f.display().to_string()]));
    for args in runs {
        let out = run(Command::new(&helm).args(["lint", "--strict", CHART]).args(&args).current_dir(util::repo()));
        let report = text(&out);
        assert!(out.status.success() && report.contains("0 chart(s) failed"), "helm lint --strict {args:?}:\n{report}");
    }
}

#[test]
fn every_rendering_validates_against_the_kubernetes_and_operator_schemas() {
    let Some(tools) = tools() else { return };
    let mut rendered: BTreeSet<String> = BTreeSet::new();
    let mut runs: Vec<(String, Vec<String>)> = vec![("defaults".into(), vec![])];
    for f in ci_values() {
        runs.push((f.file_name().unwrap().to_string_lossy().into(), vec!["-f".into(), f.display().to_string()]));
    }
    for (name, args) in runs {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let docs = template(&tools.helm, &args);
        assert!(!docs.is_empty(), "{name}: nothing rendered");
        if let Err(e) = validate(&tools, &docs) {
            panic!("{name}: the rendered chart does not validate:\n{e}");
        }
        rendered.extend(kinds(&docs).into_iter().map(String::from));
    }
    // The defaults and the ci files together exercise every template.
    for kind in [
        "ConfigMap",
        "DaemonSet",
        "NetworkPolicy",
        "PodMonitor",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ] {
        assert!(rendered.contains(kind), "no values file renders a {kind}: {rendered:?}");
    }
}

#[test]
fn a_kind_without_a_schema_fails_validation() {
    let Some(tools) = tools() else { return };
    let config_map: Value =
        yaml_serde::from_str("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {a: b}").unwrap();
    validate(&tools, std::slice::from_ref(&config_map)).expect("a plain ConfigMap validates");
    for unknown in [
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {}",
        "apiVersion: monitoring.coreos.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {}",
        "apiVersion: monitoring.coreos.com/v1alpha1\nkind: ScrapeConfig\nmetadata: {name: w}\nspec: {}",
    ] {
        let doc: Value = yaml_serde::from_str(unknown).unwrap();
        let err = validate(&tools, &[config_map.clone(), doc]).expect_err(unknown);
        assert!(err.contains("not validated"), "{err}");
    }
    // And a misspelt field of an operator kind fails, as the API server's strict validation would.
    let mut monitor = one(&template(&tools.helm, &["--set", "serviceMonitor.enabled=true"]), "ServiceMonitor").clone();
    monitor["spec"]["endpoints"][0]["honorlabels"] = Value::Bool(true);
    let err = validate(&tools, &[monitor]).expect_err("a misspelt field");
    assert!(err.contains("'honorlabels' was unexpected"), "{err}");
}

#[test]
fn bad_values_fail_with_a_schema_error() {
    let Some(helm) = helm() else { return };
    for (set, at) in [
        ("mode=sideways", "at '/mode': value must be one of 'daemonset', 'sidecar'"),
        ("image.tag=5", "at '/image/tag': got number, want string"),
        ("nonsense=1", "additional properties 'nonsense' not allowed"),
        ("web.port=-1", "at '/web/port'"),
        ("service.port=70000", "at '/service/port'"),
        (
            "prometheusRule.params.heap_leak_for=15",
            "at '/prometheusRule/params/heap_leak_for': got number, want string",
        ),
        ("sidecar.portName=leak-exporter-metrics", "at '/sidecar/portName'"),
        // The kubelet's probes present no client certificate.
        ("web.tls.clientAuthType=RequireAndVerifyClientCert", "at '/web/tls/clientAuthType'"),
        // TLS from the chart's own web configuration needs the certificate's Secret.
        ("web.tls.enabled=true", "at '/web/tls/secretName'"),
        ("web.basicAuth.users.alice=s3cret", "at '/web/basicAuth/users/alice'"),
        ("web.tls.scrapeTlsConfig.caFile=/ca.pem", "at '/web/tls/scrapeTlsConfig'"),
        ("snapshots.maxBytes=1000", "at '/snapshots/maxBytes'"),
        ("snapshots.hostPath=relative/dir", "at '/snapshots/hostPath'"),
        ("snapshots.enabled=yes", "at '/snapshots/enabled': got string, want boolean"),
    ] {
        let err = template_chart(&helm, &util::repo().join(CHART), &["--set", set])
            .err()
            .unwrap_or_else(|| panic!("--set {set} rendered"));
        assert!(err.contains(SCHEMA_ERROR) && err.contains(at), "--set {set}: expected a schema error {at:?}:\n{err}");
    }
    // Choices the schema cannot express are refused by the templates.
    for (sets, message) in [
        (&["mode=sidecar", "networkPolicy.enabled=true"][..], "networkPolicy.enabled needs mode: daemonset"),
        (&["mode=sidecar", "serviceMonitor.enabled=true"][..], "serviceMonitor.enabled needs mode: daemonset"),
        (
            &["prometheusRule.enabled=true", "prometheusRule.params.heap_leak_for=null"][..],
            "the rule template has a placeholder with no parameter: ${heap_leak_for}",
        ),
        (
            &["prometheusRule.enabled=true", "prometheusRule.params.heap_leak_for=x: y"][..],
            "the rules are not valid YAML with these parameters",
        ),
        (&["mode=sidecar", "snapshots.enabled=true"][..], "snapshots.enabled needs mode: daemonset"),
        (&["mode=sidecar", "web.existingConfigSecret=mine"][..], "need mode: daemonset"),
        (
            &[format!("web.basicAuth.users.alice={HASH}").as_str(), "serviceMonitor.enabled=true"][..],
            "needs web.basicAuth.scrapeSecret.name: Prometheus would get 401",
        ),
        (
            &[format!("web.basicAuth.users.alice={HASH}").as_str(), "web.existingConfigSecret=mine"][..],
            "web.basicAuth.users is ignored with web.existingConfigSecret",
        ),
        (&["snapshots.enabled=true", "config.snapshots.max_files=3"][..], "config.snapshots.max_files: set it"),
        (&["config.snapshots.dir=/tmp/x"][..], "config.snapshots.dir: use snapshots.enabled"),
        (
            &["snapshots.enabled=true", "snapshots.forwardTls.serverName=exporter.monitoring.svc"][..],
            "snapshots.forwardTls is for web.tls.enabled",
        ),
    ] {
        let args: Vec<&str> = sets.iter().flat_map(|s| ["--set", s]).collect();
        let err = template_chart(&helm, &util::repo().join(CHART), &args).expect_err(message);
        assert!(err.contains(message), "{sets:?}:\n{err}");
    }
}

fn rendered_groups(helm: &Path, sets: &[&str]) -> Value {
    let mut args = vec!["--set", "prometheusRule.enabled=true"];
    args.extend(sets.iter().flat_map(|s| ["--set-string", s]));
    let docs = template(helm, &args);
    one(&docs, "PrometheusRule")["spec"]["groups"].clone()
}

#[test]
fn prometheus_rule_at_the_default_parameters_equals_the_shipped_rules() {
    let Some(helm) = helm() else { return };
    let shipped = yaml_file(crate::alerts::SHIPPED);
    let groups = rendered_groups(&helm, &[]);
    assert!(groups.as_sequence().is_some_and(|g| g.len() >= 2), "{groups:?}");
    assert!(
        to_json(&groups) == to_json(&shipped["groups"]),
        "the chart's PrometheusRule at default values differs from {}",
        crate::alerts::SHIPPED
    );
}

#[test]
fn a_changed_rule_parameter_changes_the_rendered_rules() {
    let Some(helm) = helm() else { return };
    let groups = rendered_groups(&helm, &["prometheusRule.params.heap_eta_critical_seconds=7200"]);
    let expected: Value =
        yaml_serde::from_str(&crate::alerts::render_rules(&[("heap_eta_critical_seconds", "7200")])).unwrap();
    assert!(
        to_json(&groups) == to_json(&expected["groups"]),
        "the chart substitutes otherwise than alerts::render_rules"
    );
    let rule = groups
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .find(|r| r["alert"].as_str() == Some("NodejsHeapExhaustionSoon"))
        .expect("NodejsHeapExhaustionSoon");
    assert!(rule["expr"].as_str().unwrap().ends_with("< 7200"), "{:?}", rule["expr"]);
    assert!(to_json(&groups) != to_json(&yaml_file(crate::alerts::SHIPPED)["groups"]));
}

/// The exporter container of the rendered DaemonSet, and its pod spec.
fn daemonset(docs: &[Value]) -> (&Value, &Value) {
    let pod = &one(docs, "DaemonSet")["spec"]["template"]["spec"];
    let containers = pod["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1);
    (pod, &containers[0])
}

#[test]
fn daemonset_grants_exactly_the_listed_capabilities_with_read_only_host_mounts() {
    let Some(helm) = helm() else { return };
    for (enter_netns, activate) in [(false, false), (true, false), (false, true), (true, true)] {
        let sets = [format!("inspector.enterNetns={enter_netns}"), format!("inspector.activate={activate}")];
        let docs = template(&helm, &["--set", &sets[0], "--set", &sets[1]]);
        let (pod, container) = daemonset(&docs);
        let what = format!("enterNetns={enter_netns} activate={activate}");

        let mut expected: Vec<&str> = CHART_DAEMONSET_CAPABILITIES.to_vec();
        if enter_netns {
            expected.extend(CHART_ENTER_NETNS_CAPABILITIES);
        }
        if activate {
            expected.extend(CHART_ACTIVATE_CAPABILITIES);
        }
        let security = &container["securityContext"];
        assert_eq!(strings(&security["capabilities"]["add"]), expected, "{what}: capabilities added");
        assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"], "{what}");
        assert_eq!(security["runAsUser"].as_u64(), Some(0), "{what}: uid 0 makes the capabilities effective");
        assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false), "{what}");
        assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true), "{what}");
        assert_eq!(security["seccompProfile"]["type"].as_str(), Some("RuntimeDefault"), "{what}");
        assert!(security.get("privileged").is_none_or(|p| p.as_bool() == Some(false)), "{what}");
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"].as_str(), Some("RuntimeDefault"));
        assert_eq!(pod["hostPID"].as_bool(), Some(true), "{what}");
        assert_eq!(pod["hostNetwork"].as_bool(), Some(false), "{what}");
        assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false), "{what}");

        let args = strings(&container["args"]);
        for arg in
            ["--path.procfs=/host/proc", "--path.sysfs=/host/sys", "--path.rootfs=/", "--web.listen-address=:19229"]
        {
            assert!(args.iter().any(|a| a == arg), "{what}: {arg} missing from {args:?}");
        }
        assert_eq!(args.iter().any(|a| a == "--inspector.enter-netns"), enter_netns, "{what}: {args:?}");
        assert_eq!(args.iter().any(|a| a == "--inspector.activate"), activate, "{what}: {args:?}");

        // Every host path is mounted read-only, where the exporter's flags look for it.
        let mut host_mounts = BTreeSet::new();
        for volume in pod["volumes"].as_sequence().unwrap() {
            let Some(host_path) = volume["hostPath"]["path"].as_str() else { continue };
            let mounts: Vec<&Value> = container["volumeMounts"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter(|m| m["name"] == volume["name"])
                .collect();
            assert_eq!(mounts.len(), 1, "{what}: host path {host_path} mounted once");
            assert_eq!(mounts[0]["readOnly"].as_bool(), Some(true), "{what}: {host_path} must be read-only");
            host_mounts.insert((host_path.to_string(), mounts[0]["mountPath"].as_str().unwrap().to_string()));
        }
        let expected_mounts: BTreeSet<(String, String)> = [
            ("/proc", "/host/proc"),
            ("/sys/fs/cgroup", "/host/sys/fs/cgroup"),
            ("/var/log/containers", "/var/log/containers"),
            ("/var/log/pods", "/var/log/pods"),
        ]
        .iter()
        .map(|(h, m)| (h.to_string(), m.to_string()))
        .collect();
        assert_eq!(host_mounts, expected_mounts, "{what}");

        assert_eq!(container["livenessProbe"]["httpGet"]["path"].as_str(), Some("/-/healthy"));
        assert_eq!(container["readinessProbe"]["httpGet"]["path"].as_str(), Some("/-/ready"));
        assert!(
            container["resources"]["requests"]["memory"].is_string()
                && container["resources"]["limits"]["memory"].is_string()
        );
        let tolerations = pod["tolerations"].as_sequence().unwrap();
        assert!(
            tolerations.iter().any(|t| t["operator"].as_str() == Some("Exists") && t.get("key").is_none()),
            "every node"
        );
        assert_eq!(one(&docs, "ServiceAccount")["automountServiceAccountToken"].as_bool(), Some(false));
        assert_eq!(one(&docs, "Service")["spec"]["type"].as_str(), Some("ClusterIP"));
    }
}

#[test]
fn monitors_honor_the_exporters_labels_under_the_job_the_rules_select() {
    let Some(helm) = helm() else { return };
    let defaults = yaml_file(&format!("{CHART}/values.yaml"));
    let exporter_selector = defaults["prometheusRule"]["params"]["exporter_selector"].as_str().unwrap().to_string();
    let docs = template(&helm, &["--set", "serviceMonitor.enabled=true", "--set", "podMonitor.enabled=true"]);
    for (kind, endpoints) in [("ServiceMonitor", "endpoints"), ("PodMonitor", "podMetricsEndpoints")] {
        let endpoint = &one(&docs, kind)["spec"][endpoints][0];
        assert_eq!(
            endpoint["honorLabels"].as_bool(),
            Some(true),
            "{kind}: the process's namespace/pod/container must win"
        );
        assert_eq!(endpoint["port"].as_str(), Some("metrics"), "{kind}");
        let relabelings = endpoint["relabelings"].as_sequence().unwrap();
        let job = relabelings
            .iter()
            .find(|r| r["targetLabel"].as_str() == Some("job"))
            .and_then(|r| r["replacement"].as_str())
            .unwrap_or_else(|| panic!("{kind}: no job relabeling"));
        assert_eq!(
            exporter_selector,
            format!("job=\"{job}\""),
            "{kind}: the rules' exporter_selector must match the job"
        );
        assert!(
            relabelings
                .iter()
                .any(|r| r["action"].as_str() == Some("labeldrop")
                    && r["regex"].as_str() == Some("namespace|pod|container")),
            "{kind}: the exporter pod's own labels must not land on host processes"
        );
    }
}

#[test]
fn sidecar_mode_renders_a_podmonitor_for_the_sidecars_and_no_exporter_pods() {
    let Some(helm) = helm() else { return };
    let docs = template(&helm, &["--set", "mode=sidecar", "--set", "podMonitor.enabled=true"]);
    for kind in ["DaemonSet", "Service", "ServiceAccount", "NetworkPolicy"] {
        assert!(!kinds(&docs).contains(&kind), "sidecar mode rendered a {kind}");
    }
    let monitor = one(&docs, "PodMonitor");
    let labels = &monitor["spec"]["selector"]["matchLabels"];
    assert_eq!(labels["nodejs-leak-exporter/sidecar"].as_str(), Some("true"), "{labels:?}");
    assert_eq!(monitor["spec"]["namespaceSelector"]["any"].as_bool(), Some(true));
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"].as_str(), Some("leak-metrics"));
    assert_eq!(endpoint["honorLabels"].as_bool(), Some(true));
}

#[test]
fn networkpolicy_admits_only_the_metrics_port() {
    let Some(helm) = helm() else { return };
    let docs = template(&helm, &["--set", "networkPolicy.enabled=true"]);
    let spec = &one(&docs, "NetworkPolicy")["spec"];
    assert_eq!(strings(&spec["policyTypes"]), ["Ingress"]);
    let ingress = spec["ingress"].as_sequence().unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(ingress[0]["ports"].as_sequence().unwrap().len(), 1);
    assert_eq!(ingress[0]["ports"][0]["port"].as_str(), Some("metrics"));
    assert!(!ingress[0]["from"].as_sequence().unwrap().is_empty(), "peers are restricted by default");
    assert_eq!(spec["podSelector"]["matchLabels"], one(&docs, "DaemonSet")["spec"]["selector"]["matchLabels"]);
}

#[test]
fn networkpolicy_admits_the_exporter_pods_to_each_other_when_they_forward_snapshot_alerts() {
    let Some(helm) = helm() else { return };
    for forward in [true, false] {
        let docs = template(
            &helm,
            &[
                "--set",
                "networkPolicy.enabled=true",
                "--set",
                "snapshots.enabled=true",
                "--set",
                &format!("snapshots.forward={forward}"),
            ],
        );
        let spec = &one(&docs, "NetworkPolicy")["spec"];
        let ingress = spec["ingress"].as_sequence().unwrap();
        assert_eq!(ingress.len(), if forward { 2 } else { 1 }, "forward={forward}");
        if forward {
            assert_eq!(ingress[1]["ports"].as_sequence().unwrap().len(), 1);
            assert_eq!(ingress[1]["ports"][0]["port"].as_str(), Some("metrics"));
            let from = ingress[1]["from"].as_sequence().unwrap();
            assert_eq!(from.len(), 1);
            assert_eq!(from[0]["podSelector"]["matchLabels"], spec["podSelector"]["matchLabels"], "the exporter pods");
            assert!(from[0].get("namespaceSelector").is_none(), "of the release's namespace only");
        }
    }
}

/// The exporter's configuration file as the rendered ConfigMap holds it.
fn rendered_config(docs: &[Value]) -> Option<Value> {
    let text = docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some("ConfigMap"))
        .find_map(|d| d["data"]["config.yml"].as_str())?;
    Some(yaml_serde::from_str(text).unwrap_or_else(|e| panic!("config.yml: {e}\n{text}")))
}

/// The volume of this name and the container's one mount of it.
fn volume<'a>(pod: &'a Value, container: &'a Value, name: &str) -> Option<(&'a Value, &'a Value)> {
    let volume = pod["volumes"].as_sequence()?.iter().find(|v| v["name"].as_str() == Some(name))?;
    let mounts: Vec<&Value> =
        container["volumeMounts"].as_sequence()?.iter().filter(|m| m["name"].as_str() == Some(name)).collect();
    assert_eq!(mounts.len(), 1, "volume {name} mounted once");
    Some((volume, mounts[0]))
}

#[test]
fn snapshots_render_under_the_configuration_file_with_a_writable_directory() {
    let Some(helm) = helm() else { return };
    // NODE_NAME always comes from the pod's node, snapshots or not.
    for docs in [template(&helm, &[]), template(&helm, &["--set", "snapshots.enabled=true"])] {
        let env = &daemonset(&docs).1["env"];
        let node =
            env.as_sequence().unwrap().iter().find(|e| e["name"].as_str() == Some("NODE_NAME")).expect("NODE_NAME");
        assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"].as_str(), Some("spec.nodeName"));
    }
    let docs = template(&helm, &[]);
    assert!(rendered_config(&docs).is_none(), "off by default: no configuration file");
    let (pod, container) = daemonset(&docs);
    assert!(volume(pod, container, "snapshots").is_none());

    let docs =
        template(&helm, &["--set", "snapshots.enabled=true", "--set", "config.snapshots.alerts[0]=NodejsHeapLeak"]);
    let snapshots = rendered_config(&docs).expect("a configuration file")["snapshots"].clone();
    let expected: Value = yaml_serde::from_str(
        "{dir: /var/lib/nodejs-leak-exporter/snapshots, max_files: 10, max_bytes: 2147483648, gc: false, \
         timeout: 10m, forward: true, alerts: [NodejsHeapLeak]}",
    )
    .unwrap();
    assert_eq!(to_json(&snapshots), to_json(&expected), "the values and config.snapshots, merged");
    let (pod, container) = daemonset(&docs);
    let (emptydir, mount) = volume(pod, container, "snapshots").expect("the snapshot volume");
    assert!(emptydir["emptyDir"]["sizeLimit"].as_u64().unwrap() > 2147483648, "room for max_bytes: {emptydir:?}");
    let dir = snapshots["dir"].as_str().unwrap();
    assert!(dir.starts_with(&format!("{}/", mount["mountPath"].as_str().unwrap())), "{dir} on the volume");
    assert!(mount.get("readOnly").is_none_or(|r| r.as_bool() == Some(false)), "writable");
    // A changed snapshot setting rolls the pods: the exporter reads it at start.
    let checksum = |sets: &[&str]| {
        let sets: Vec<&str> = sets.iter().flat_map(|s| ["--set", s]).collect();
        one(&template(&helm, &sets), "DaemonSet")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            .clone()
    };
    let before = checksum(&["snapshots.enabled=true"]);
    assert!(before.is_string() && before != checksum(&["snapshots.enabled=true", "snapshots.gc=true"]));

    // Without forwarding the key is left out: an exporter that does not know it refuses the file.
    let docs = template(&helm, &["--set", "snapshots.enabled=true", "--set", "snapshots.forward=false"]);
    assert!(rendered_config(&docs).unwrap()["snapshots"].get("forward").is_none());

    // On the node: created if missing, and the only host path mounted writable.
    let docs =
        template(&helm, &["--set", "snapshots.enabled=true", "--set", "snapshots.hostPath=/var/lib/nle-snapshots"]);
    let (pod, container) = daemonset(&docs);
    let (host, mount) = volume(pod, container, "snapshots").unwrap();
    assert_eq!(host["hostPath"]["path"].as_str(), Some("/var/lib/nle-snapshots"));
    assert_eq!(host["hostPath"]["type"].as_str(), Some("DirectoryOrCreate"));
    assert!(host.get("emptyDir").is_none());
    let writable: Vec<&str> = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|m| m["readOnly"].as_bool() != Some(true))
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(writable, [mount["name"].as_str().unwrap()]);
}

/// The endpoint of the rendered ServiceMonitor and PodMonitor.
fn monitor_endpoints(docs: &[Value]) -> Vec<(&'static str, &Value)> {
    [("ServiceMonitor", "endpoints"), ("PodMonitor", "podMetricsEndpoints")]
        .into_iter()
        .map(|(kind, endpoints)| (kind, &one(docs, kind)["spec"][endpoints][0]))
        .collect()
}

#[test]
fn web_security_renders_a_mounted_secret_https_probes_and_scrape_credentials() {
    let Some(helm) = helm() else { return };
    let file = format!("{CHART}/ci/web-tls-values.yaml");
    let values = yaml_file(&file);
    let docs = template(&helm, &["-f", &file, "--set", "podMonitor.enabled=true"]);
    let secret = one(&docs, "Secret");
    let name = secret["metadata"]["name"].as_str().unwrap();
    let files = rendered_files(&docs, "Secret", name).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].0, "web-config.yml");
    let web: Value = yaml_serde::from_str(&files[0].1).unwrap();
    let expected: Value = yaml_serde::from_str(
        "{cert_file: /etc/nodejs-leak-exporter-tls/tls.crt, key_file: /etc/nodejs-leak-exporter-tls/tls.key, \
         client_auth_type: VerifyClientCertIfGiven, client_ca_file: /etc/nodejs-leak-exporter-tls/ca.crt, \
         min_version: TLS12}",
    )
    .unwrap();
    assert_eq!(to_json(&web["tls_server_config"]), to_json(&expected));
    assert_eq!(web["basic_auth_users"], values["web"]["basicAuth"]["users"]);

    let (pod, container) = daemonset(&docs);
    assert!(
        strings(&container["args"]).contains(&"--web.config.file=/etc/nodejs-leak-exporter-web/web-config.yml".into())
    );
    for (volume_name, secret_name, path) in [
        ("web-config", name, "/etc/nodejs-leak-exporter-web"),
        ("tls", values["web"]["tls"]["secretName"].as_str().unwrap(), "/etc/nodejs-leak-exporter-tls"),
    ] {
        let (v, m) = volume(pod, container, volume_name).unwrap_or_else(|| panic!("no volume {volume_name}"));
        assert_eq!(v["secret"]["secretName"].as_str(), Some(secret_name));
        assert_eq!(v["secret"]["defaultMode"].as_u64(), Some(0o400));
        assert_eq!(m["mountPath"].as_str(), Some(path));
        assert_eq!(m["readOnly"].as_bool(), Some(true));
        assert!(m.get("subPath").is_none(), "a subPath mount is never updated");
    }
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["scheme"].as_str(), Some("HTTPS"), "{probe}");
    }
    // The exporter re-reads the web configuration: no annotation restarts the pods for it.
    let annotations = &one(&docs, "DaemonSet")["spec"]["template"]["metadata"]["annotations"];
    let keys: Vec<&str> =
        annotations.as_mapping().map(|m| m.keys().filter_map(|k| k.as_str()).collect()).unwrap_or_default();
    assert!(keys.iter().all(|k| *k == "checksum/config"), "{keys:?}");
    let scrape_secret = values["web"]["basicAuth"]["scrapeSecret"]["name"].as_str().unwrap();
    for (kind, endpoint) in monitor_endpoints(&docs) {
        assert_eq!(endpoint["scheme"].as_str(), Some("https"), "{kind}");
        assert_eq!(to_json(&endpoint["tlsConfig"]), to_json(&values["web"]["tls"]["scrapeTlsConfig"]), "{kind}");
        for (field, key) in [("username", "username"), ("password", "password")] {
            assert_eq!(endpoint["basicAuth"][field]["name"].as_str(), Some(scrape_secret), "{kind}");
            assert_eq!(endpoint["basicAuth"][field]["key"].as_str(), Some(key), "{kind}");
        }
    }
    if let Some(tools) = tools() {
        validate(&tools, &docs).unwrap_or_else(|e| panic!("with the PodMonitor too:\n{e}"));
    }

    // Off by default: plain HTTP, no Secret, no flag.
    let docs = template(&helm, &["--set", "serviceMonitor.enabled=true", "--set", "podMonitor.enabled=true"]);
    assert!(!kinds(&docs).contains(&"Secret"));
    let (pod, container) = daemonset(&docs);
    assert!(!strings(&container["args"]).iter().any(|a| a.starts_with("--web.config.file")));
    assert!(volume(pod, container, "web-config").is_none() && volume(pod, container, "tls").is_none());
    assert_eq!(container["readinessProbe"]["httpGet"]["scheme"].as_str(), Some("HTTP"));
    for (kind, endpoint) in monitor_endpoints(&docs) {
        assert_eq!(endpoint["scheme"].as_str(), Some("http"), "{kind}");
        assert!(endpoint.get("tlsConfig").is_none() && endpoint.get("basicAuth").is_none(), "{kind}");
    }

    // Basic auth alone: a web configuration of users only, plain HTTP, credentials in the monitors.
    let users = format!("web.basicAuth.users.alice={HASH}");
    let docs = template(
        &helm,
        &["--set", &users, "--set", "web.basicAuth.scrapeSecret.name=scrape", "--set", "serviceMonitor.enabled=true"],
    );
    let files = rendered_files(&docs, "Secret", one(&docs, "Secret")["metadata"]["name"].as_str().unwrap()).unwrap();
    let web: Value = yaml_serde::from_str(&files[0].1).unwrap();
    assert!(web.get("tls_server_config").is_none());
    assert_eq!(web["basic_auth_users"]["alice"].as_str(), Some(HASH));
    let (pod, container) = daemonset(&docs);
    assert!(volume(pod, container, "tls").is_none());
    assert_eq!(container["livenessProbe"]["httpGet"]["scheme"].as_str(), Some("HTTP"));
    let endpoint = &one(&docs, "ServiceMonitor")["spec"]["endpoints"][0];
    assert_eq!(endpoint["scheme"].as_str(), Some("http"));
    assert_eq!(endpoint["basicAuth"]["password"]["name"].as_str(), Some("scrape"));

    // A web configuration of one's own: mounted as it is, with the TLS Secret beside it.
    let docs = template(
        &helm,
        &[
            "--set",
            "web.existingConfigSecret=my-web-config",
            "--set",
            "web.tls.enabled=true",
            "--set",
            "web.tls.secretName=my-tls",
        ],
    );
    assert!(!kinds(&docs).contains(&"Secret"), "the user's Secret is not rendered");
    let (pod, container) = daemonset(&docs);
    assert_eq!(volume(pod, container, "web-config").unwrap().0["secret"]["secretName"].as_str(), Some("my-web-config"));
    assert_eq!(volume(pod, container, "tls").unwrap().0["secret"]["secretName"].as_str(), Some("my-tls"));
    assert_eq!(container["readinessProbe"]["httpGet"]["scheme"].as_str(), Some("HTTPS"));
}

/// Every dashboards/*.json, by file name, as parsed JSON.
fn repository_dashboards() -> Vec<(String, serde_json::Value)> {
    let mut found: Vec<(String, serde_json::Value)> = std::fs::read_dir(util::repo().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let json = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), json)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(found.len() >= 2);
    found
}

/// The dashboards' ConfigMaps hold exactly the repository's dashboards, with the sidecar label.
fn assert_dashboards(docs: &[Value], label: &str, value: &str) {
    let maps: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some("ConfigMap") && d["metadata"]["labels"][label].as_str().is_some())
        .collect();
    let dashboards = repository_dashboards();
    assert_eq!(maps.len(), dashboards.len(), "one ConfigMap per dashboard");
    for (file, json) in dashboards {
        let map = maps
            .iter()
            .find(|m| m["data"].get(file.as_str()).is_some())
            .unwrap_or_else(|| panic!("no ConfigMap has {file}"));
        assert_eq!(map["metadata"]["labels"][label].as_str(), Some(value), "{file}");
        let shipped: serde_json::Value = serde_json::from_str(map["data"][file.as_str()].as_str().unwrap()).unwrap();
        assert!(shipped == json, "the ConfigMap's {file} differs from dashboards/{file}");
    }
}

#[test]
fn dashboards_configmaps_hold_the_repositorys_dashboards() {
    let Some(helm) = helm() else { return };
    // One source: the chart's files are links to dashboards/, one per dashboard.
    for (file, _) in repository_dashboards() {
        let link = util::repo().join(CHART).join("files/dashboards").join(&file);
        let target =
            std::fs::read_link(&link).unwrap_or_else(|e| panic!("{} is not a symbolic link: {e}", link.display()));
        assert_eq!(target, Path::new("../../../../dashboards").join(&file));
    }
    assert_dashboards(&template(&helm, &["--set", "dashboards.enabled=true"]), "grafana_dashboard", "1");
    let custom = template(
        &helm,
        &[
            "--set",
            "dashboards.enabled=true",
            "--set",
            "dashboards.label=dash",
            "--set-string",
            "dashboards.labelValue=yes",
        ],
    );
    assert_dashboards(&custom, "dash", "yes");
}

#[test]
fn the_packaged_chart_carries_the_dashboards_and_the_rules() {
    let Some(helm) = helm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out =
        run(Command::new(&helm).args(["package", CHART, "--destination"]).arg(dir.path()).current_dir(util::repo()));
    assert!(out.status.success(), "helm package:\n{}", text(&out));
    let version = yaml_file(&format!("{CHART}/Chart.yaml"))["version"].as_str().unwrap().to_string();
    let package = dir.path().join(format!("nodejs-leak-exporter-{version}.tgz"));
    let docs =
        template_chart(&helm, &package, &["--set", "dashboards.enabled=true", "--set", "prometheusRule.enabled=true"])
            .unwrap_or_else(|e| panic!("helm template of the package:\n{e}"));
    assert_dashboards(&docs, "grafana_dashboard", "1");
    let groups = &one(&docs, "PrometheusRule")["spec"]["groups"];
    assert!(to_json(groups) == to_json(&yaml_file(crate::alerts::SHIPPED)["groups"]));
}

#[test]
fn the_sidecar_example_runs_the_charts_sidecar_container() {
    let Some(tools) = tools() else { return };
    let example = yaml_file(SIDECAR_EXAMPLE);
    validate(&tools, std::slice::from_ref(&example)).unwrap_or_else(|e| panic!("{SIDECAR_EXAMPLE}:\n{e}"));
    let pod = &example["spec"]["template"];
    assert_eq!(pod["spec"]["shareProcessNamespace"].as_bool(), Some(true));
    assert_eq!(pod["metadata"]["labels"]["nodejs-leak-exporter/sidecar"].as_str(), Some("true"));
    let containers = pod["spec"]["containers"].as_sequence().unwrap();
    let sidecar =
        containers.iter().find(|c| c["name"].as_str() == Some("nodejs-leak-exporter")).expect("the exporter container");
    let app = containers.iter().find(|c| c["name"] != sidecar["name"]).expect("the app container");
    assert_eq!(sidecar["securityContext"]["runAsUser"], app["securityContext"]["runAsUser"], "runs as the app's uid");
    assert!(sidecar["securityContext"]["capabilities"].get("add").is_none());
    assert_eq!(strings(&sidecar["securityContext"]["capabilities"]["drop"]), ["ALL"]);
    assert!(pod["spec"].get("volumes").is_none() && pod["spec"].get("hostPID").is_none(), "no host access");
    assert!(strings(&sidecar["args"]).contains(&"--inspector.port=9229".to_string()));
    assert!(strings(&app["command"]).contains(&"--inspect=127.0.0.1:9229".to_string()));

    // A parent chart including the named template renders exactly the example's container.
    let parent = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(parent.path().join("templates")).unwrap();
    std::fs::create_dir_all(parent.path().join("charts")).unwrap();
    std::os::unix::fs::symlink(util::repo().join(CHART), parent.path().join("charts/nodejs-leak-exporter")).unwrap();
    std::fs::write(parent.path().join("Chart.yaml"), "apiVersion: v2\nname: orders\nversion: 0.1.0\n").unwrap();
    std::fs::write(parent.path().join("values.yaml"), "nodejs-leak-exporter:\n  mode: sidecar\n").unwrap();
    let template = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: orders
spec:
  selector:
    matchLabels: {app: orders}
  template:
    metadata:
      labels: {app: orders, nodejs-leak-exporter/sidecar: "true"}
    spec:
      shareProcessNamespace: true
      containers:
        - name: orders
          image: node:22-bookworm-slim
        {{- include "nodejs-leak-exporter.sidecarContainer" (index .Subcharts "nodejs-leak-exporter") | nindent 8 }}
"#;
    std::fs::write(parent.path().join("templates/deployment.yaml"), template).unwrap();
    let docs = template_chart(&tools.helm, parent.path(), &[]).unwrap_or_else(|e| panic!("the parent chart:\n{e}"));
    validate(&tools, &docs).unwrap_or_else(|e| panic!("the parent chart's Deployment:\n{e}"));
    let rendered = &one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][1];
    assert!(
        to_json(rendered) == to_json(sidecar),
        "{SIDECAR_EXAMPLE}'s exporter container differs from the chart's sidecarContainer at its defaults:\n{}",
        yaml_serde::to_string(rendered).unwrap()
    );
}

#[test]
fn the_dockerfile_builds_the_binary_and_tag_the_chart_runs() {
    let bin = Path::new(env!("CARGO_BIN_EXE_nodejs-leak-exporter")).file_name().unwrap().to_string_lossy().into_owned();
    let dockerfile = std::fs::read_to_string(util::repo().join("Dockerfile")).unwrap();
    for needle in [
        "FROM rust:1.95-bookworm AS build".to_string(),
        "cargo build --release --locked".to_string(),
        format!("target/release/{bin}"),
        format!("ENTRYPOINT [\"/usr/bin/{bin}\"]"),
        "USER 65534:65534".to_string(),
        "EXPOSE 19229".to_string(),
    ] {
        assert!(dockerfile.contains(&needle), "Dockerfile lacks {needle:?}");
    }
    let chart = yaml_file(&format!("{CHART}/Chart.yaml"));
    let app_version = chart["appVersion"].as_str().unwrap();
    assert_eq!(app_version, env!("CARGO_PKG_VERSION"), "the chart's appVersion is the crate's version");
    let values = yaml_file(&format!("{CHART}/values.yaml"));
    let repository = values["image"]["repository"].as_str().unwrap();
    assert_eq!(values["image"]["tag"].as_str(), Some(""), "the tag defaults to appVersion");
    let build = format!("docker build -t {repository}:{app_version} .");
    assert!(dockerfile.contains(&build), "the Dockerfile must say how the chart's image is built: {build}");
    let dockerignore = std::fs::read_to_string(util::repo().join(".dockerignore")).unwrap();
    assert!(dockerignore.lines().any(|l| l == "target/"), ".dockerignore must exclude target/");

    let Some(helm) = helm() else { return };
    let docs = template(&helm, &[]);
    let (_, container) = daemonset(&docs);
    assert_eq!(container["image"].as_str(), Some(format!("{repository}:{app_version}").as_str()));
    let readme = std::fs::read_to_string(util::repo().join(CHART).join("README.md")).unwrap();
    assert!(readme.contains(&build), "the chart README must say how the image is built: {build}");
}

/// The scrape credentials of ci/web-tls-values.yaml: its bcrypt hash is of this password.
const CI_CREDENTIALS: (&str, &str) = ("prometheus", "changeme");
/// The node the downward API gives the runs' `NODE_NAME`.
const CI_NODE: &str = "ci-node";

/// An exporter container as the chart renders it, made runnable here.
struct Runnable {
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// The CA of the test certificate the TLS Secret holds, when the probes speak HTTPS.
    https_ca: Option<PathBuf>,
}

/// The files of a mounted volume: name and content.
type Files = Vec<(String, String)>;

/// The files a rendered ConfigMap or Secret of this name holds, decoded; None when the chart
/// does not render it (a Secret the user brings).
fn rendered_files(docs: &[Value], kind: &str, name: &str) -> Option<Files> {
    let doc = docs.iter().find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))?;
    let data = doc["data"].as_mapping().expect("data");
    Some(
        data.iter()
            .map(|(k, v)| {
                let (k, v) = (k.as_str().unwrap().to_string(), v.as_str().unwrap());
                let text = if kind == "Secret" {
                    use base64::Engine as _;
                    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v).unwrap()).unwrap()
                } else {
                    v.to_string()
                };
                (k, text)
            })
            .collect(),
    )
}

/// What cert-manager puts in a kubernetes.io/tls Secret, made by openssl: a self-signed
/// certificate for 127.0.0.1, its key, and itself as `ca.crt`.
fn test_tls_secret() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let out = run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-keyout", "tls.key", "-out", "tls.crt", "-days", "2", "-subj", "/CN=nodejs-leak-exporter"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .current_dir(dir.path()));
    assert!(out.status.success(), "openssl req:\n{}", text(&out));
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    vec![("tls.crt".into(), read("tls.crt")), ("tls.key".into(), read("tls.key")), ("ca.crt".into(), read("tls.crt"))]
}

/// An exporter container of a pod as the chart renders it, made runnable here. The read-only host
/// paths are this host's own (`/host/proc` is `/proc`); every other volume is a directory under
/// `dir`: a ConfigMap's or Secret's files as rendered (a Secret the chart does not render is a TLS
/// Secret with a test certificate), an emptyDir or a writable host path empty; and every path
/// under a mount, in the flags and in those files, is rewritten to its directory. The listen
/// address and log format are the test harness's; the environment is the rendered one, the node
/// `CI_NODE`. The inspector stays off (`--inspector.activate` would signal other tests'
/// processes): the flags that drive it are still parsed and validated.
fn runnable(pod: &Value, container: &Value, docs: &[Value], dir: &Path) -> Runnable {
    let mut mounts: Vec<(String, PathBuf, Files)> = Vec::new();
    let none = Vec::new();
    let volumes = pod["volumes"].as_sequence().unwrap_or(&none);
    for mount in container["volumeMounts"].as_sequence().unwrap_or(&none) {
        let volume = volumes.iter().find(|v| v["name"] == mount["name"]).expect("a mount's volume");
        let files = if let Some(name) = volume["configMap"]["name"].as_str() {
            rendered_files(docs, "ConfigMap", name).unwrap_or_else(|| panic!("no ConfigMap {name} rendered"))
        } else if let Some(name) = volume["secret"]["secretName"].as_str() {
            rendered_files(docs, "Secret", name).unwrap_or_else(test_tls_secret)
        } else if volume.get("emptyDir").is_some() || mount["readOnly"].as_bool() != Some(true) {
            Vec::new()
        } else {
            continue;
        };
        let local = dir.join(mount["name"].as_str().unwrap());
        mounts.push((mount["mountPath"].as_str().unwrap().to_string(), local, files));
    }
    let localize = |text: &str| {
        let mut text = text.to_string();
        for (path, local, _) in &mounts {
            text = text.replace(&format!("{path}/"), &format!("{}/", local.display()));
        }
        text
    };
    let mut https_ca = None;
    for (_, local, files) in &mounts {
        std::fs::create_dir_all(local).unwrap();
        for (name, content) in files {
            std::fs::write(local.join(name), localize(content)).unwrap();
            if name == "ca.crt" {
                https_ca = Some(local.join(name));
            }
        }
    }
    let tls = container["readinessProbe"]["httpGet"]["scheme"].as_str() == Some("HTTPS");
    assert_eq!(tls, https_ca.is_some(), "HTTPS probes if and only if a TLS Secret is mounted");

    let mut args = Vec::new();
    for arg in strings(&container["args"]) {
        let (flag, value) = arg.split_once('=').unwrap_or((arg.as_str(), ""));
        match flag {
            "--web.listen-address" | "--log.format" | "--log.level" => continue,
            "--path.procfs" => args.push(format!("--path.procfs={}", value.replace("/host/proc", "/proc"))),
            "--path.sysfs" => args.push(format!("--path.sysfs={}", value.replace("/host/sys", "/sys"))),
            _ => args.push(localize(&arg)),
        }
    }
    args.push("--no-collector.inspector".into());
    let mut env = Vec::new();
    for var in container["env"].as_sequence().unwrap_or(&none) {
        let name = var["name"].as_str().unwrap().to_string();
        let value = match (var["value"].as_str(), var["valueFrom"]["fieldRef"]["fieldPath"].as_str()) {
            (Some(v), _) => v.to_string(),
            (None, Some("spec.nodeName")) => CI_NODE.to_string(),
            _ => panic!("an environment variable the test cannot give: {var:?}"),
        };
        env.push((name, value));
    }
    Runnable { args, env, https_ca }
}

/// `curl` over HTTPS trusting `ca`: the status and the body.
fn curl_https(ca: &Path, url: &str, credentials: Option<(&str, &str)>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", "--cacert"]).arg(ca);
    if let Some((user, password)) = credentials {
        cmd.args(["-u", &format!("{user}:{password}")]);
    }
    let out = run(cmd.arg(url));
    assert!(out.status.success(), "curl {url}: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

#[test]
fn the_exporter_runs_with_the_arguments_and_configuration_the_chart_renders() {
    let Some(helm) = helm() else { return };
    let (Some(_), Some(_)) = (util::require_tool("openssl"), util::require_tool("curl")) else { return };
    let Some(app) = util::NodeApp::fixture("idle.js", &[], &[]) else { return };
    let mut renderings = vec![("defaults".to_string(), template(&helm, &[]))];
    for file in ci_values() {
        let path = file.to_string_lossy().into_owned();
        renderings.push((path.clone(), template(&helm, &["-f", &path])));
    }
    let example = yaml_file(SIDECAR_EXAMPLE);
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (i, (name, docs)) in renderings.iter().enumerate() {
        if !kinds(docs).contains(&"DaemonSet") {
            continue;
        }
        let sub = dir.path().join(i.to_string());
        let (pod, container) = daemonset(docs);
        runs.push((name.clone(), runnable(pod, container, docs, &sub)));
    }
    let pod = &example["spec"]["template"]["spec"];
    let sidecar = pod["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str() == Some("nodejs-leak-exporter"))
        .expect("the example's exporter container");
    runs.push((SIDECAR_EXAMPLE.to_string(), runnable(pod, sidecar, &[], &dir.path().join("sidecar"))));
    assert!(runs.len() >= 5, "{} runs", runs.len());
    assert!(runs.iter().any(|(_, r)| r.https_ca.is_some()), "no rendering serves HTTPS");

    let pid = app.pid_label();
    for (name, run) in runs {
        let args: Vec<&str> = run.args.iter().map(String::as_str).collect();
        let mut cmd = Command::new(util::exporter_bin());
        cmd.envs(run.env.iter().map(|(k, v)| (k, v)));
        let Some(ca) = &run.https_ca else {
            let exporter = util::Exporter::start_with(cmd, &args);
            let rss = exporter.wait_metric("process_resident_memory_bytes", &[("pid", &pid)]);
            assert!(rss > 0.0, "{name}: the exporter run with {args:?} reads the app: rss {rss}");
            continue;
        };
        // The rendered web configuration really serves TLS with basic auth.
        let exporter = util::Exporter::listening(cmd, &args);
        let url = |path: &str| format!("https://{}{path}", exporter.addr);
        let rss = util::wait_for(&format!("{name}: the app's RSS over HTTPS"), Duration::from_secs(20), || {
            let (code, body) = curl_https(ca, &url("/metrics"), Some(CI_CREDENTIALS));
            assert!(code == 200, "{name}: GET /metrics with the right credentials: {code} {body}");
            util::metric_value(&body, "process_resident_memory_bytes", &[("pid", &pid)])
        });
        assert!(rss > 0.0, "{name}: rss {rss}");
        for wrong in [None, Some((CI_CREDENTIALS.0, "wrong")), Some(("mallory", CI_CREDENTIALS.1))] {
            assert_eq!(curl_https(ca, &url("/metrics"), wrong).0, 401, "{name}: GET /metrics with {wrong:?}");
        }
        // The probes' paths, without credentials, as the kubelet calls them.
        assert_eq!(curl_https(ca, &url("/-/healthy"), None).0, 200, "{name}");
        assert_eq!(curl_https(ca, &url("/-/ready"), None).0, 200, "{name}");
        // Snapshots are on, in the mounted directory, for this node.
        let (code, body) = curl_https(ca, &url("/api/v1/snapshots"), Some(CI_CREDENTIALS));
        assert_eq!(code, 200, "{name}: GET /api/v1/snapshots: {body}");
        let log = exporter.log();
        assert!(log.contains(&format!("\"node\":\"{CI_NODE}\"")), "{name}: snapshots for NODE_NAME:\n{log}");
    }
}
