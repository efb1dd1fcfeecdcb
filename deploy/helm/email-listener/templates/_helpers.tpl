{{/*
Expand the name of the chart.
*/}}
{{- define "email-listener.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "email-listener.fullname" -}}
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

{{/*
Names of the worker Deployment and of the api StatefulSet's headless Service.
*/}}
{{- define "email-listener.workerName" -}}
{{- printf "%s-worker" (include "email-listener.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "email-listener.headlessName" -}}
{{- printf "%s-headless" (include "email-listener.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "email-listener.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "email-listener.labels" -}}
helm.sh/chart: {{ include "email-listener.chart" . }}
{{ include "email-listener.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "email-listener.selectorLabels" -}}
app.kubernetes.io/name: {{ include "email-listener.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Selector labels of one role: (dict "root" $ "component" "api"|"worker").
*/}}
{{- define "email-listener.componentSelectorLabels" -}}
{{ include "email-listener.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "email-listener.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "email-listener.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference.
*/}}
{{- define "email-listener.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
Name of the Secret the pods read EL_STORE, EL_QUEUE, EL_SECRET_KEY, EL_API_TOKEN... from.
*/}}
{{- define "email-listener.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else }}
{{- include "email-listener.fullname" . }}
{{- end }}
{{- end }}

{{/*
The data of the Secret the chart creates, as YAML (EL_ variable -> value), empty values left out.
*/}}
{{- define "email-listener.secretValues" -}}
{{- $tokens := .Values.secrets.apiTokens }}
{{- if kindIs "slice" $tokens }}{{ $tokens = join "," $tokens }}{{ end }}
{{- $all := dict
  "EL_STORE" .Values.store.url
  "EL_QUEUE" .Values.queue.url
  "EL_SINK" .Values.sink.url
  "EL_SECRET_KEY" .Values.secrets.secretKey
  "EL_SECRET_KEY_OLD" .Values.secrets.secretKeyOld
  "EL_API_TOKEN" $tokens
  "EL_WEBHOOK_SECRET" .Values.secrets.webhookSecret }}
{{- range $k, $v := $all }}
{{- if $v }}
{{ $k }}: {{ $v | toString | toJson }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Refuses to render a configuration that cannot work, with a message that says what to set.
*/}}
{{- define "email-listener.validate" -}}
{{- if not .Values.existingSecret }}
{{- $store := .Values.store.url | toString }}
{{- $queue := .Values.queue.url | toString }}
{{- if not $store }}
{{- fail "set store.url (redis://user:password@host:6379/0) or existingSecret (a Secret with the key EL_STORE)" }}
{{- end }}
{{- if not $queue }}
{{- fail "set queue.url (amqp://user:password@host:5672/vhost) or existingSecret (a Secret with the key EL_QUEUE)" }}
{{- end }}
{{- if and (hasPrefix "redis" $store) (not .Values.secrets.secretKey) (not .Values.config.allowPlaintextSecrets) }}
{{- fail "a Redis store needs secrets.secretKey (openssl rand -base64 32), or config.allowPlaintextSecrets" }}
{{- end }}
{{- if and (not .Values.secrets.apiTokens) (not .Values.config.insecureNoAuth) }}
{{- fail "set secrets.apiTokens (a list of bearer tokens), or config.insecureNoAuth" }}
{{- end }}
{{- if and (eq $store "memory") (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled (gt (int .Values.workerReplicaCount) 0)) }}
{{- fail "store.url memory keeps the registry inside one process: use a Redis store for replicaCount > 1, autoscaling or workers" }}
{{- end }}
{{- if and (eq $queue "inproc") (gt (int .Values.workerReplicaCount) 0) }}
{{- fail "queue.url inproc cannot reach workers: use a RabbitMQ queue, or workerReplicaCount 0" }}
{{- end }}
{{- if and .Values.secrets.secretKeyOld (not .Values.secrets.secretKey) }}
{{- fail "secrets.secretKeyOld needs secrets.secretKey" }}
{{- end }}
{{- if and .Values.secrets.webhookSecret (not .Values.config.webhookUrl) }}
{{- fail "secrets.webhookSecret needs config.webhookUrl" }}
{{- end }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas is greater than autoscaling.maxReplicas" }}
{{- end }}
{{- end }}

{{/*
EL_ROLE of the StatefulSet's pods: "api", or "all" for the single-node memory store (the binary
accepts --role api only with a Redis store).
*/}}
{{- define "email-listener.apiRole" -}}
{{- if and (not .Values.existingSecret) (eq (.Values.store.url | toString) "memory") }}
{{- "all" }}
{{- else }}
{{- "api" }}
{{- end }}
{{- end }}

{{/*
Pod annotations of both roles: (dict "root" $).
*/}}
{{- define "email-listener.podAnnotations" -}}
{{- $root := .root }}
{{- if not $root.Values.existingSecret }}
checksum/secret: {{ include "email-listener.secretValues" $root | sha256sum }}
{{- end }}
{{- if $root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ $root.Values.containerPort | toString | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with $root.Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Environment of the container: (dict "root" $ "role" "api"|"worker").
Secret values come from secretKeyRef; with existingSecret the optional keys are optional refs.
*/}}
{{- define "email-listener.env" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $c := $v.config }}
- name: EL_ROLE
  value: {{ .role }}
- name: EL_NODE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: EL_LISTEN
  value: {{ include "email-listener.listen" $root | quote }}
{{- with $c.logFormat }}
- name: EL_LOG_FORMAT
  value: {{ . | quote }}
{{- end }}
{{- with $c.logLevel }}
- name: EL_LOG_LEVEL
  value: {{ . | quote }}
{{- end }}
{{- if and (ne .role "worker") $c.capacity }}
- name: EL_CAPACITY
  value: {{ $c.capacity | toString | quote }}
{{- end }}
{{- with $c.lease }}
- name: EL_LEASE
  value: {{ . | toString | quote }}
{{- end }}
{{- with $c.storePrefix }}
- name: EL_STORE_PREFIX
  value: {{ . | quote }}
{{- end }}
{{- with $c.queueType }}
- name: EL_QUEUE_TYPE
  value: {{ . | quote }}
{{- end }}
{{- with $c.webhookUrl }}
- name: EL_WEBHOOK_URL
  value: {{ . | quote }}
{{- end }}
{{- if $c.insecureNoAuth }}
- name: EL_INSECURE_NO_AUTH
  value: "true"
{{- end }}
{{- if $c.allowPlaintextSecrets }}
- name: EL_ALLOW_PLAINTEXT_SECRETS
  value: "true"
{{- end }}
{{- $secretName := include "email-listener.secretName" $root }}
{{- $created := include "email-listener.secretValues" $root | fromYaml }}
{{- $required := dict
  "EL_STORE" true
  "EL_QUEUE" true
  "EL_SECRET_KEY" (not $c.allowPlaintextSecrets)
  "EL_API_TOKEN" (not $c.insecureNoAuth)
  "EL_SINK" false
  "EL_SECRET_KEY_OLD" false
  "EL_WEBHOOK_SECRET" false }}
{{- range $key := list "EL_STORE" "EL_QUEUE" "EL_SINK" "EL_SECRET_KEY" "EL_SECRET_KEY_OLD" "EL_API_TOKEN" "EL_WEBHOOK_SECRET" }}
{{- if or $v.existingSecret (hasKey $created $key) }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: {{ $key }}
      {{- if and $v.existingSecret (not (get $required $key)) }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
EL_LISTEN: host:port, with brackets around an IPv6 host.
*/}}
{{- define "email-listener.listen" -}}
{{- $host := .Values.config.listenHost | default "0.0.0.0" | toString }}
{{- if contains ":" $host }}
{{- printf "[%s]:%v" $host .Values.containerPort }}
{{- else }}
{{- printf "%s:%v" $host .Values.containerPort }}
{{- end }}
{{- end }}

{{/*
The pod spec shared by both roles: (dict "root" $ "role" "api"|"worker" "resources" {...}).
*/}}
{{- define "email-listener.podSpec" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
serviceAccountName: {{ include "email-listener.serviceAccountName" $root }}
automountServiceAccountToken: {{ $v.serviceAccount.automount }}
# Service links would put variables such as <SERVICE>_PORT into the environment; a Service named
# "el" would give EL_PORT, which the binary refuses as an unknown setting.
enableServiceLinks: false
{{- with $v.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
containers:
  - name: {{ $root.Chart.Name }}
    image: {{ include "email-listener.image" $root | quote }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args:
      - serve
    env:
      {{- include "email-listener.env" (dict "root" $root "role" .role) | trim | nindent 6 }}
    ports:
      - name: http
        containerPort: {{ $v.containerPort }}
        protocol: TCP
    {{- with $v.startupProbe }}
    startupProbe:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $v.livenessProbe }}
    livenessProbe:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $v.readinessProbe }}
    readinessProbe:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $v.securityContext }}
    securityContext:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- with $v.volumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: tmp
    emptyDir: {}
  {{- with $v.volumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
