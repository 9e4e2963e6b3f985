{{/*
Names and labels, as the prometheus-community charts make them.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "nodejs-leak-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified name: fullnameOverride, else the release name, prefixed to the chart name
unless it already contains it. Cut at 63 characters (DNS label).
*/}}
{{- define "nodejs-leak-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "nodejs-leak-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels of every resource. */}}
{{- define "nodejs-leak-exporter.labels" -}}
helm.sh/chart: {{ include "nodejs-leak-exporter.chart" . }}
{{ include "nodejs-leak-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ include "nodejs-leak-exporter.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "nodejs-leak-exporter.name" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The labels the Service, the monitors and the DaemonSet select its pods by. */}}
{{- define "nodejs-leak-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nodejs-leak-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount of the DaemonSet. */}}
{{- define "nodejs-leak-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nodejs-leak-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image tag: image.tag, else the chart's appVersion (the Dockerfile's tag scheme). */}}
{{- define "nodejs-leak-exporter.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* repository:tag, or repository@digest when image.digest is set. */}}
{{- define "nodejs-leak-exporter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "nodejs-leak-exporter.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
The capabilities the DaemonSet container adds after dropping ALL, as a YAML list: each is
explained in values.yaml and the chart README; tests/it/privileges.rs holds the same lists.
*/}}
{{- define "nodejs-leak-exporter.daemonsetCapabilities" -}}
- SYS_PTRACE
- DAC_READ_SEARCH
{{- if .Values.inspector.enterNetns }}
- SYS_ADMIN
{{- end }}
{{- if .Values.inspector.activate }}
- KILL
{{- end }}
{{- end }}

{{/*
The relabelings of a monitor: the job name the rules' exporter_selector expects, the node, and,
for the DaemonSet, dropping the exporter pod's own namespace/pod/container target labels (with
honorLabels the watched process's labels win where the exporter sets them; a process outside any
pod must not inherit the exporter pod's). Then the user's.
*/}}
{{- define "nodejs-leak-exporter.relabelings" -}}
{{- $monitor := .monitor -}}
- action: replace
  targetLabel: job
  replacement: {{ $monitor.job | quote }}
- action: replace
  sourceLabels: [__meta_kubernetes_pod_node_name]
  targetLabel: node
{{- if eq .root.Values.mode "daemonset" }}
- action: labeldrop
  regex: namespace|pod|container
{{- else }}
- action: labeldrop
  regex: container
{{- end }}
{{- with $monitor.relabelings }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The exporter container for sidecar mode, to be included into the app's pod spec by a parent
chart:

  containers:
    - name: app
      ...
    {{- include "nodejs-leak-exporter.sidecarContainer" (index .Subcharts "nodejs-leak-exporter") | nindent 4 }}

The pod must set shareProcessNamespace: true and carry the label sidecar.podLabel. The
exporter shares the pod's network (the app's inspector on 127.0.0.1) and, through the shared
process namespace, sees the app's processes; it runs as the app's user and needs no capability
and no host path.
*/}}
{{- define "nodejs-leak-exporter.sidecarContainer" -}}
- name: {{ .Values.sidecar.containerName }}
  image: {{ include "nodejs-leak-exporter.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - --web.listen-address=:{{ .Values.web.port }}
    {{- range .Values.sidecar.inspectorPorts }}
    - --inspector.port={{ . }}
    {{- end }}
    {{- if .Values.sidecar.activate }}
    - --inspector.activate
    {{- end }}
    - --no-collector.logs
    - --sample.interval={{ .Values.sample.interval }}
    - --log.level={{ .Values.log.level }}
    - --log.format={{ .Values.log.format }}
    {{- range .Values.sidecar.extraArgs }}
    - {{ . }}
    {{- end }}
  ports:
    - name: {{ .Values.sidecar.portName }}
      containerPort: {{ .Values.web.port }}
      protocol: TCP
  livenessProbe:
    httpGet:
      path: /-/healthy
      port: {{ .Values.sidecar.portName }}
    {{- with .Values.livenessProbe }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  readinessProbe:
    httpGet:
      path: /-/ready
      port: {{ .Values.sidecar.portName }}
    {{- with .Values.readinessProbe }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  resources:
    {{- toYaml .Values.sidecar.resources | nindent 4 }}
  securityContext:
    runAsUser: {{ .Values.sidecar.runAsUser }}
    runAsGroup: {{ .Values.sidecar.runAsGroup }}
    runAsNonRoot: true
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: [ALL]
    seccompProfile:
      type: RuntimeDefault
{{- end }}

{{/*
The exporter's configuration file: `config`, with `snapshots` laid under `snapshots:` when they
are on. Empty when there is nothing to write. The keys the chart derives from its values are
refused in `config.snapshots`, so that one setting has one place.
*/}}
{{- define "nodejs-leak-exporter.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $given := get $config "snapshots" | default dict -}}
{{- if .Values.snapshots.enabled }}
{{- if ne .Values.mode "daemonset" }}
{{- fail "snapshots.enabled needs mode: daemonset: a sidecar's pod has no directory the chart can mount for it" }}
{{- end }}
{{- $snapshots := dict "dir" (include "nodejs-leak-exporter.snapshotsDir" .) "max_files" (int64 .Values.snapshots.maxFiles) "max_bytes" (int64 .Values.snapshots.maxBytes) "gc" .Values.snapshots.gc "timeout" .Values.snapshots.timeout -}}
{{- /* Rendered only when on: an exporter without the key refuses the file. */ -}}
{{- if .Values.snapshots.forward }}
{{- $_ := set $snapshots "forward" true }}
{{- with .Values.snapshots.forwardTls }}
{{- if or .serverName .trustSecretCa }}
{{- if not $.Values.web.tls.enabled }}
{{- fail "snapshots.forwardTls is for web.tls.enabled: forwards over plain HTTP check no certificate" }}
{{- end }}
{{- if .serverName }}
{{- $_ := set $snapshots "forward_server_name" .serverName }}
{{- end }}
{{- if .trustSecretCa }}
{{- $_ := set $snapshots "forward_ca_file" (printf "%s/ca.crt" (include "nodejs-leak-exporter.tlsMount" $)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- range $key, $_ := $snapshots }}
{{- if hasKey $given $key }}
{{- fail (printf "config.snapshots.%s: set it with the chart's snapshots values instead" $key) }}
{{- end }}
{{- end }}
{{- $_ := set $config "snapshots" (merge $snapshots $given) }}
{{- else if hasKey $given "dir" }}
{{- fail "config.snapshots.dir: use snapshots.enabled, which mounts a writable directory for it (the root filesystem is read-only)" }}
{{- end }}
{{- if $config }}
{{- toYaml $config }}
{{- end }}
{{- end }}

{{/* Where the snapshot volume is mounted; the exporter creates the directory below it 0700. */}}
{{- define "nodejs-leak-exporter.snapshotsMount" -}}
/var/lib/nodejs-leak-exporter
{{- end }}

{{- define "nodejs-leak-exporter.snapshotsDir" -}}
{{ include "nodejs-leak-exporter.snapshotsMount" . }}/snapshots
{{- end }}

{{/*
Whether the exporter gets a web configuration file (`--web.config.file`): rendered from web.tls
and web.basicAuth.users, or the user's web.existingConfigSecret. "true" or empty.
*/}}
{{- define "nodejs-leak-exporter.webConfig" -}}
{{- $web := .Values.web -}}
{{- if or $web.tls.enabled $web.basicAuth.users $web.existingConfigSecret -}}
{{- if ne .Values.mode "daemonset" }}
{{- fail "web.tls, web.basicAuth.users and web.existingConfigSecret need mode: daemonset: mount the web configuration into your sidecar's pod yourself" }}
{{- end }}
{{- if and $web.existingConfigSecret $web.basicAuth.users }}
{{- fail "web.basicAuth.users is ignored with web.existingConfigSecret: put the users in that Secret's web-config.yml" }}
{{- end }}
true
{{- end }}
{{- end }}

{{/* The Secret holding web-config.yml: the user's, or the one the chart renders. */}}
{{- define "nodejs-leak-exporter.webConfigSecret" -}}
{{- .Values.web.existingConfigSecret | default (printf "%s-web-config" (include "nodejs-leak-exporter.fullname" .)) }}
{{- end }}

{{/* Where the TLS Secret is mounted (the rendered web configuration names its files there). */}}
{{- define "nodejs-leak-exporter.tlsMount" -}}
/etc/nodejs-leak-exporter-tls
{{- end }}

{{/* The rendered web configuration file, in the exporter-toolkit's format. */}}
{{- define "nodejs-leak-exporter.webConfigFile" -}}
{{- $web := .Values.web -}}
{{- $file := dict -}}
{{- if $web.tls.enabled }}
{{- if not $web.tls.secretName }}
{{- fail "web.tls.enabled needs web.tls.secretName (a kubernetes.io/tls Secret) or web.existingConfigSecret" }}
{{- end }}
{{- $mount := include "nodejs-leak-exporter.tlsMount" . }}
{{- $tls := dict "cert_file" (printf "%s/tls.crt" $mount) "key_file" (printf "%s/tls.key" $mount) "client_auth_type" $web.tls.clientAuthType "min_version" $web.tls.minVersion }}
{{- if ne $web.tls.clientAuthType "NoClientCert" }}
{{- $_ := set $tls "client_ca_file" (printf "%s/ca.crt" $mount) }}
{{- end }}
{{- $_ := set $file "tls_server_config" $tls }}
{{- end }}
{{- with $web.basicAuth.users }}
{{- $_ := set $file "basic_auth_users" . }}
{{- end }}
{{- toYaml $file }}
{{- end }}

{{/*
What a ServiceMonitor endpoint or PodMonitor podMetricsEndpoint adds for the endpoint's security:
the scheme, tlsConfig and basicAuth. Refuses users without the Secret Prometheus scrapes with.
*/}}
{{- define "nodejs-leak-exporter.scrapeSecurity" -}}
{{- $web := .Values.web -}}
{{- if and $web.basicAuth.users (not $web.basicAuth.scrapeSecret.name) }}
{{- fail "web.basicAuth.users with a ServiceMonitor or PodMonitor needs web.basicAuth.scrapeSecret.name: Prometheus would get 401" }}
{{- end -}}
scheme: {{ if $web.tls.enabled }}https{{ else }}http{{ end }}
{{- if and $web.tls.enabled $web.tls.scrapeTlsConfig }}
tlsConfig:
  {{- toYaml $web.tls.scrapeTlsConfig | nindent 2 }}
{{- end }}
{{- with $web.basicAuth.scrapeSecret }}
{{- if .name }}
basicAuth:
  username:
    name: {{ .name }}
    key: {{ .usernameKey }}
  password:
    name: {{ .name }}
    key: {{ .passwordKey }}
{{- end }}
{{- end }}
{{- end }}
