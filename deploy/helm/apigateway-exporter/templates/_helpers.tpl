{{/* Names --------------------------------------------------------------------------- */}}

{{- define "apigateway-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release name alone when it already contains the chart's name, so that
`helm install apigateway-exporter` names everything apigateway-exporter (what an IRSA trust
policy for system:serviceaccount:<namespace>:apigateway-exporter expects). */}}
{{- define "apigateway-exporter.fullname" -}}
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

{{- define "apigateway-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "apigateway-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "apigateway-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "apigateway-exporter.labels" -}}
helm.sh/chart: {{ include "apigateway-exporter.chart" . }}
{{ include "apigateway-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The standard labels and more: dict "ctx" $ "extra" map. The standard ones win, so that
user labels never break a selector (and no key appears twice). */}}
{{- define "apigateway-exporter.labelsWith" -}}
{{- $labels := include "apigateway-exporter.labels" .ctx | fromYaml }}
{{- toYaml (merge $labels (default dict .extra)) }}
{{- end }}

{{- define "apigateway-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "apigateway-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "apigateway-exporter.configMapName" -}}
{{- if .Values.existingConfigMap }}
{{- .Values.existingConfigMap }}
{{- else }}
{{- printf "%s-config" (include "apigateway-exporter.fullname" .) }}
{{- end }}
{{- end }}

{{- define "apigateway-exporter.webSecretName" -}}
{{- if .Values.webConfig.existingSecret }}
{{- .Values.webConfig.existingSecret }}
{{- else }}
{{- printf "%s-web" (include "apigateway-exporter.fullname" .) }}
{{- end }}
{{- end }}

{{/* image.tag may be a number (--set image.tag=2, tag: 2 in a values file): rendered through
toString. A values file's numbers reach the template as float64, so a whole one is printed as
an integer (20240101, not 2.0240101e+07); 1.0 is the number 1 by then: quote such tags. */}}
{{- define "apigateway-exporter.image" -}}
{{- $tag := .Values.image.tag }}
{{- if kindIs "float64" $tag }}
{{- if eq $tag (float64 (int64 $tag)) }}{{ $tag = int64 $tag }}{{ end }}
{{- end }}
{{- $tag = ternary "" (toString $tag) (kindIs "invalid" $tag) }}
{{- $tag = default .Chart.AppVersion $tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Modes ---------------------------------------------------------------------------- */}}

{{/* "true" or "": whether --web.config.file is passed. */}}
{{- define "apigateway-exporter.webConfigEnabled" -}}
{{- $w := .Values.webConfig }}
{{- if or $w.existingSecret $w.tls.enabled $w.basicAuth.enabled }}true{{ end }}
{{- end }}

{{/* The config file's text; the ConfigMap holds it with a final newline. */}}
{{- define "apigateway-exporter.configText" -}}
{{- $config := deepCopy (default dict .Values.config) }}
{{- if .Values.sharding.enabled }}
{{- $_ := set $config "shard" (dict "index" "${SHARD_INDEX}" "total" (int .Values.sharding.shards)) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* The Firehose endpoint's port: from config.stream.listen_address when the chart writes
the config (the exporter's default is 9744), else firehose.containerPort. */}}
{{- define "apigateway-exporter.firehosePort" -}}
{{- if .Values.existingConfigMap }}
{{- .Values.firehose.containerPort }}
{{- else }}
{{- $addr := "" }}
{{- with .Values.config.stream }}{{ $addr = .listen_address | default "" }}{{ end }}
{{- if $addr }}
{{- $port := regexFind "[0-9]+$" $addr }}
{{- if not $port }}{{ fail (printf "config.stream.listen_address: %q has no port" $addr) }}{{ end }}
{{- $port }}
{{- else }}9744{{ end }}
{{- end }}
{{- end }}

{{/* Probes ---------------------------------------------------------------------------- */}}

{{/* One probe's handler. Under TLS the kubelet probes over HTTPS (without verifying the
certificate); under basic auth it sends probeAuthorization, or falls back to tcpSocket. */}}
{{- define "apigateway-exporter.probeHandler" -}}
{{- $w := .ctx.Values.webConfig }}
{{- if and $w.basicAuth.enabled (not $w.basicAuth.probeAuthorization) }}
tcpSocket:
  port: metrics
{{- else }}
httpGet:
  path: {{ .path }}
  port: metrics
  {{- if $w.tls.enabled }}
  scheme: HTTPS
  {{- end }}
  {{- if $w.basicAuth.enabled }}
  httpHeaders:
    - name: Authorization
      value: {{ $w.basicAuth.probeAuthorization | quote }}
  {{- end }}
{{- end }}
{{- end }}

{{/* The pod's parts ------------------------------------------------------------------- */}}

{{/* The exporter container. dict "ctx" $ "sidecar" bool. */}}
{{- define "apigateway-exporter.container" -}}
{{- $ := .ctx }}
{{- $v := $.Values }}
name: apigateway-exporter
image: {{ include "apigateway-exporter.image" $ }}
imagePullPolicy: {{ $v.image.pullPolicy }}
args:
  - --config.file=/etc/apigateway-exporter/config.yaml
  {{- if include "apigateway-exporter.webConfigEnabled" $ }}
  - --web.config.file=/etc/apigateway-exporter/web/web.yml
  {{- end }}
  - --log.format={{ $v.logFormat }}
  - --log.level={{ $v.logLevel }}
  {{- range $v.extraArgs }}
  - {{ . | quote }}
  {{- end }}
{{- $f := $v.firehose }}
{{- if or $v.sharding.enabled (and $f.existingSecret (or $f.metricStreamKey $f.accessLogsKey)) $v.extraEnv }}
env:
  {{- if $v.sharding.enabled }}
  # The StatefulSet's pod index (Kubernetes 1.28+) is the shard index.
  - name: SHARD_INDEX
    valueFrom:
      fieldRef:
        fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
  {{- end }}
  {{- if and $f.existingSecret $f.metricStreamKey }}
  - name: FIREHOSE_ACCESS_KEY
    valueFrom:
      secretKeyRef:
        name: {{ $f.existingSecret }}
        key: {{ $f.metricStreamKey }}
  {{- end }}
  {{- if and $f.existingSecret $f.accessLogsKey }}
  - name: FIREHOSE_ACCESS_LOGS_KEY
    valueFrom:
      secretKeyRef:
        name: {{ $f.existingSecret }}
        key: {{ $f.accessLogsKey }}
  {{- end }}
  {{- with $v.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
ports:
  - name: metrics
    containerPort: 9743   # the default --web.listen-address, 0.0.0.0:9743
    protocol: TCP
  {{- if $f.enabled }}
  - name: firehose
    containerPort: {{ include "apigateway-exporter.firehosePort" $ }}
    protocol: TCP
  {{- end }}
{{- if .sidecar }}
# No readinessProbe: a pod is Ready only when all its containers are, and /-/ready answers 503
# until a poll has reached AWS, which would take the application out of its Service.
startupProbe:
  {{- include "apigateway-exporter.probeHandler" (dict "ctx" $ "path" "/-/healthy") | trim | nindent 2 }}
  periodSeconds: 2
  timeoutSeconds: 2
  failureThreshold: 30
{{- else }}
# /-/ready answers 503 until a poll cycle has reached AWS: a pod without working credentials
# or network stays unready instead of looking fine.
readinessProbe:
  {{- include "apigateway-exporter.probeHandler" (dict "ctx" $ "path" "/-/ready") | trim | nindent 2 }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- end }}
livenessProbe:
  {{- include "apigateway-exporter.probeHandler" (dict "ctx" $ "path" "/-/healthy") | trim | nindent 2 }}
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 3
resources:
  {{- toYaml $v.resources | nindent 2 }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  readOnlyRootFilesystem: true   # the exporter writes no files
  allowPrivilegeEscalation: false
  capabilities:
    drop: [ALL]
  seccompProfile:
    type: RuntimeDefault
volumeMounts:
  - name: apigateway-exporter
    mountPath: /etc/apigateway-exporter
    readOnly: true
{{- end }}

{{/* One projected volume for the config, the web config and the certificate: no volume is
mounted inside another (a mount point inside a read-only volume cannot be created), and each
file still updates in place when its ConfigMap or Secret changes. */}}
{{- define "apigateway-exporter.volume" -}}
name: apigateway-exporter
projected:
  sources:
    - configMap:
        name: {{ include "apigateway-exporter.configMapName" . }}
        items:
          - key: config.yaml
            path: config.yaml
    {{- if include "apigateway-exporter.webConfigEnabled" . }}
    - secret:
        name: {{ include "apigateway-exporter.webSecretName" . }}
        items:
          - key: web.yml
            path: web/web.yml
    {{- end }}
    {{- if .Values.webConfig.tls.enabled }}
    - secret:
        name: {{ .Values.webConfig.tls.secretName }}
        items:
          - key: tls.crt
            path: tls/tls.crt
          - key: tls.key
            path: tls/tls.key
    {{- end }}
{{- end }}

{{/* The pod template of the Deployment and the StatefulSet. */}}
{{- define "apigateway-exporter.podTemplate" -}}
metadata:
  labels:
    {{- $labels := include "apigateway-exporter.selectorLabels" . | fromYaml }}
    {{- $_ := set $labels "app.kubernetes.io/component" "exporter" }}
    {{- toYaml (merge $labels (default dict .Values.podLabels)) | nindent 4 }}
  annotations:
    {{- if not .Values.existingConfigMap }}
    # The exporter reads its config at startup: a changed config rolls the pod.
    checksum/config: {{ printf "%s\n" (include "apigateway-exporter.configText" .) | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "apigateway-exporter.serviceAccountName" . }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    fsGroup: 65532       # the projected IRSA token stays readable for uid 65532
    seccompProfile:
      type: RuntimeDefault
  containers:
    - {{ include "apigateway-exporter.container" (dict "ctx" . "sidecar" false) | trim | indent 6 | trim }}
  volumes:
    - {{ include "apigateway-exporter.volume" . | trim | indent 6 | trim }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* One scrape endpoint of the ServiceMonitor / PodMonitor. */}}
{{- define "apigateway-exporter.scrapeEndpoint" -}}
{{- $v := .ctx.Values }}
{{- $w := $v.webConfig }}
port: metrics
path: /metrics
interval: {{ .monitor.interval }}
scrapeTimeout: {{ .monitor.scrapeTimeout }}
{{- if $w.tls.enabled }}
scheme: https
tlsConfig:
  serverName: {{ default (include "apigateway-exporter.fullname" .ctx) $w.scrape.serverName }}
  ca:
    secret:
      name: {{ $w.tls.secretName }}
      key: {{ $w.scrape.caKey }}
{{- end }}
{{- if $w.basicAuth.enabled }}
basicAuth:
  username:
    name: {{ $w.scrape.basicAuthSecret }}
    key: username
  password:
    name: {{ $w.scrape.basicAuthSecret }}
    key: password
{{- end }}
{{- end }}

{{/* Combinations the schema cannot express; each message names the values to change. */}}
{{- define "apigateway-exporter.validate" -}}
{{- $v := .Values }}
{{- if and $v.sharding.enabled $v.sidecar.enabled }}
{{- fail "sharding.enabled and sidecar.enabled exclude each other: a sidecar is one exporter per application pod" }}
{{- end }}
{{- if and (not $v.existingConfigMap) (hasKey (default dict $v.config) "shard") }}
{{- fail "config.shard: leave it out and set sharding.enabled and sharding.shards (the chart writes shard.index from the pod index)" }}
{{- end }}
{{- if and $v.serviceMonitor.enabled $v.podMonitor.enabled }}
{{- fail "serviceMonitor.enabled and podMonitor.enabled: enable one, each would scrape the exporter again" }}
{{- end }}
{{- if and $v.serviceMonitor.enabled $v.sidecar.enabled }}
{{- fail "serviceMonitor.enabled: a sidecar has no Service of its own; use podMonitor.enabled with sidecar.podSelector" }}
{{- end }}
{{- if and (not $v.serviceAccount.create) $v.serviceAccount.irsaRoleArn }}
{{- fail "serviceAccount.irsaRoleArn: the chart only annotates a ServiceAccount it creates (serviceAccount.create); annotate yours with eks.amazonaws.com/role-arn" }}
{{- end }}
{{- range $v.extraArgs }}
{{- $flag := regexReplaceAll "=.*$" . "" }}
{{- if has $flag (list "--config.file" "--web.config.file" "--web.listen-address") }}
{{- fail (printf "extraArgs: %s is set by the chart (the mounts, ports and probes depend on it)" $flag) }}
{{- end }}
{{- end }}
{{- $w := $v.webConfig }}
{{- if and $w.basicAuth.enabled (not $w.existingSecret) (not $w.basicAuth.users) }}
{{- fail "webConfig.basicAuth.users: basic auth needs at least one user (name: bcrypt hash), or webConfig.existingSecret" }}
{{- end }}
{{- if and $w.basicAuth.enabled (or $v.serviceMonitor.enabled $v.podMonitor.enabled) (not $w.scrape.basicAuthSecret) }}
{{- fail "webConfig.scrape.basicAuthSecret: with basic auth the ServiceMonitor/PodMonitor needs the Secret (keys username, password) Prometheus sends" }}
{{- end }}
{{- if $v.firehose.enabled }}
{{- if $v.sharding.enabled }}
{{- fail "firehose.enabled with sharding.enabled: a Service hands each delivery to one shard, which ignores the other shards' metrics; give each shard its own delivery stream (docs/metric-streams.md)" }}
{{- end }}
{{- if not $v.existingConfigMap }}
{{- $c := default dict $v.config }}
{{- $stream := and $c.stream $c.stream.enabled }}
{{- $logs := and $c.access_logs (eq (toString $c.access_logs.mode) "firehose") }}
{{- if not (or $stream $logs) }}
{{- fail "firehose.enabled: the config starts no Firehose endpoint; set config.stream.enabled: true or config.access_logs.mode: firehose" }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
