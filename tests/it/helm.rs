//! The Helm chart, with the real helm (target/tools/helm, from scripts/install-test-deps.sh):
//! `helm lint --strict` and `helm template` for the default values and every `ci/*-values.yaml`,
//! every rendered resource validated against the Kubernetes schemas (`kubernetes-validate
//! --strict`) or the Prometheus operator's (`helm/tests/validate-monitoring.py`), and a kind with
//! no schema failing; bad values refused by `values.schema.json`; the PrometheusRule equal to
//! `alerts/` at the default parameters and following a changed one; the DaemonSet granting exactly
//! the capabilities of `crate::privileges`, with read-only host mounts; the dashboards' ConfigMaps
//! holding `dashboards/*.json`, also from the packaged chart; the sidecar example running the
//! chart's sidecar container; the Dockerfile building the binary and tag the chart names; and the
//! real exporter started with the arguments and configuration file each rendering gives it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use yaml_serde::Value;

use crate::privileges::{CHART_ACTIVATE_CAPABILITIES, CHART_DAEMONSET_CAPABILITIES, CHART_ENTER_NETNS_CAPABILITIES};
use crate::util;

const CHART: &str = "helm/nodejs-leak-exporter";
const SIDECAR_EXAMPLE: &str = "examples/kubernetes/sidecar-deployment.yaml";
/// The Kubernetes version the rendered manifests are validated against (that of the kubectl layer
/// helm comes from).
const KUBERNETES_VERSION: &str = "1.33.0";
const SCHEMA_ERROR: &str = "values don't meet the specifications of the schema";

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

/// The arguments of an exporter container as the chart renders them, made runnable here: the host
/// paths the DaemonSet mounts are this host's own (`/host/proc` is `/proc`), the configuration file
/// is the rendered ConfigMap's, and the listen address and log format are the test harness's.
/// The inspector stays off (`--inspector.activate` would signal other tests' processes): the flags
/// that drive it are still parsed and validated.
fn runnable_args(container: &Value, docs: &[Value], dir: &Path) -> Vec<String> {
    let mut args = Vec::new();
    for arg in strings(&container["args"]) {
        let (flag, value) = arg.split_once('=').unwrap_or((arg.as_str(), ""));
        match flag {
            "--web.listen-address" | "--log.format" | "--log.level" => continue,
            "--path.procfs" => args.push(format!("--path.procfs={}", value.replace("/host/proc", "/proc"))),
            "--path.sysfs" => args.push(format!("--path.sysfs={}", value.replace("/host/sys", "/sys"))),
            "--config.file" => {
                let name = Path::new(value).file_name().unwrap().to_string_lossy().into_owned();
                let data = docs
                    .iter()
                    .filter(|d| d["kind"].as_str() == Some("ConfigMap"))
                    .find_map(|d| d["data"][name.as_str()].as_str())
                    .unwrap_or_else(|| panic!("no ConfigMap holds {name} for {arg}"));
                let file = dir.join(&name);
                std::fs::write(&file, data).unwrap();
                args.push(format!("--config.file={}", file.display()));
            }
            _ => args.push(arg),
        }
    }
    args.push("--no-collector.inspector".into());
    args
}

#[test]
fn the_exporter_runs_with_the_arguments_and_configuration_the_chart_renders() {
    let Some(helm) = helm() else { return };
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
        std::fs::create_dir_all(&sub).unwrap();
        runs.push((name.clone(), runnable_args(daemonset(docs).1, docs, &sub)));
    }
    let sidecar = example["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str() == Some("nodejs-leak-exporter"))
        .expect("the example's exporter container");
    runs.push((SIDECAR_EXAMPLE.to_string(), runnable_args(sidecar, &[], dir.path())));
    assert!(runs.len() >= 5, "{} runs", runs.len());

    let pid = app.pid_label();
    for (name, args) in runs {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let exporter = util::Exporter::start_with(Command::new(util::exporter_bin()), &args);
        let rss = exporter.wait_metric("process_resident_memory_bytes", &[("pid", &pid)]);
        assert!(rss > 0.0, "{name}: the exporter run with {args:?} reads the app: rss {rss}");
    }
}
