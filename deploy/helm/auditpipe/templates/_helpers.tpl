{{/* Names and labels. */}}
{{- define "auditpipe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "auditpipe.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "auditpipe.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "auditpipe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "producer"). */}}
{{- define "auditpipe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "auditpipe.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "auditpipe.componentLabels" -}}
{{ include "auditpipe.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "auditpipe.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- end -}}

{{/* Pod security context: non-root unless the caller says root (the audit-log tailer). */}}
{{- define "auditpipe.podSecurityContext" -}}
{{- if .root -}}
runAsNonRoot: false
runAsUser: 0
runAsGroup: 0
{{- else -}}
runAsNonRoot: true
runAsUser: {{ .values.podSecurity.runAsUser }}
runAsGroup: {{ .values.podSecurity.runAsGroup }}
fsGroup: {{ .values.podSecurity.fsGroup }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "auditpipe.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Probes on the metrics server's /healthz and /readyz. */}}
{{- define "auditpipe.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: metrics}
  periodSeconds: 5
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /healthz, port: metrics}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
readinessProbe:
  httpGet: {path: /readyz, port: metrics}
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}

{{/* The Secret of a stage's Kafka user: (dict "root" $ "stage" "producer"). */}}
{{- define "auditpipe.kafkaUserSecret" -}}
{{- $u := index .root.Values.kafka.users .stage -}}
{{- default $u.name $u.secretName -}}
{{- end -}}

{{/* The kafka: section of a stage's config file (CONTRACT.md, internal/kafka.Connection). */}}
{{- define "auditpipe.kafkaConfig" -}}
{{- $k := .root.Values.kafka -}}
{{- $u := index $k.users .stage -}}
brokers:
{{ toYaml $k.bootstrap }}
clientID: {{ $u.name | quote }}
{{- if eq .stage "producer" }}
maxMessageBytes: {{ int64 $k.maxMessageBytes }}
{{- end }}
tls:
  enabled: {{ $k.tls.enabled }}
{{- if $k.tls.enabled }}
{{- if $k.tls.caSecret }}
  caFile: /etc/auditpipe/kafka/ca/{{ $k.tls.caKey }}
{{- end }}
{{- if eq $k.auth "tls" }}
  certFile: /etc/auditpipe/kafka/user/user.crt
  keyFile: /etc/auditpipe/kafka/user/user.key
{{- end }}
{{- if $k.tls.serverName }}
  serverName: {{ $k.tls.serverName | quote }}
{{- end }}
  insecureSkipVerify: {{ $k.tls.insecureSkipVerify }}
{{- end }}
{{- $mech := dict "scram-sha-512" "SCRAM-SHA-512" "scram-sha-256" "SCRAM-SHA-256" "plain" "PLAIN" }}
{{- if hasKey $mech $k.auth }}
sasl:
  mechanism: {{ index $mech $k.auth }}
  username: {{ $u.name | quote }}
  passwordFile: /etc/auditpipe/kafka/user/password
{{- end }}
{{- end -}}

{{/* Volumes every stage mounts: config, Kafka CA and user, /tmp. */}}
{{- define "auditpipe.kafkaVolumes" -}}
{{- $k := .root.Values.kafka -}}
{{- if and $k.tls.enabled $k.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ $k.tls.caSecret }}
    items: [{key: {{ $k.tls.caKey }}, path: {{ $k.tls.caKey }}}]
{{- end }}
{{- if ne $k.auth "none" }}
- name: kafka-user
  secret:
    secretName: {{ include "auditpipe.kafkaUserSecret" . }}
{{- if eq $k.auth "tls" }}
    items: [{key: user.crt, path: user.crt}, {key: user.key, path: user.key}]
{{- else }}
    items: [{key: password, path: password}]
{{- end }}
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{- define "auditpipe.kafkaMounts" -}}
{{- $k := .root.Values.kafka -}}
- name: config
  mountPath: /etc/auditpipe/config
  readOnly: true
{{- if and $k.tls.enabled $k.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/auditpipe/kafka/ca
  readOnly: true
{{- end }}
{{- if ne $k.auth "none" }}
- name: kafka-user
  mountPath: /etc/auditpipe/kafka/user
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* The fleet registry with policy names turned into mounted paths. */}}
{{- define "auditpipe.fleet" -}}
{{- $f := deepCopy .Values.fleet -}}
{{- $d := default dict $f.defaults -}}
{{- /* No default policy: the processor's built-in tke-default (files/tke-default.yaml, a copy the tests keep equal). */ -}}
{{- $_ := set $d "policy" (printf "/etc/auditpipe/policies/%s" (default "tke-default.yaml" $d.policy)) -}}
{{- $_ := set $f "defaults" $d -}}
{{- range $id, $c := (default dict $f.clusters) }}
{{- if $c.policy }}{{ $_ := set $c "policy" (printf "/etc/auditpipe/policies/%s" $c.policy) }}{{ end -}}
{{- end -}}
{{- toYaml $f -}}
{{- end -}}

{{- define "auditpipe.metricsPort" -}}
{{- $p := dict "producer" 9463 "processor" 9464 "consumer" 9465 -}}
{{- index $p . -}}
{{- end -}}

{{/* Checks that span several values; the schema checks each one. */}}
{{- define "auditpipe.validate" -}}
{{- if gt (int .Values.processor.replicas) (int .Values.kafka.partitions.raw) -}}
{{- fail (printf "processor.replicas (%d) must not exceed kafka.partitions.raw (%d): a replica without a partition sits idle" (int .Values.processor.replicas) (int .Values.kafka.partitions.raw)) -}}
{{- end -}}
{{- if and .Values.consumer.keda.enabled (gt (int .Values.consumer.keda.maxReplicaCount) (int .Values.kafka.partitions.events)) -}}
{{- fail (printf "consumer.keda.maxReplicaCount (%d) must not exceed kafka.partitions.events (%d)" (int .Values.consumer.keda.maxReplicaCount) (int .Values.kafka.partitions.events)) -}}
{{- end -}}
{{- if gt (int .Values.consumer.replicas) (int .Values.kafka.partitions.events) -}}
{{- fail (printf "consumer.replicas (%d) must not exceed kafka.partitions.events (%d)" (int .Values.consumer.replicas) (int .Values.kafka.partitions.events)) -}}
{{- end -}}
{{- if and (not .Values.consumer.local.enabled) (eq .Values.consumer.cls.mode "off") -}}
{{- fail "consumer: no sink: enable consumer.local or set consumer.cls.mode: cls" -}}
{{- end -}}
{{- if and (eq .Values.consumer.cls.mode "cls") (not .Values.consumer.cls.endpoint) -}}
{{- fail "consumer.cls.endpoint: the CLS sink needs the region's upload endpoint, e.g. ap-guangzhou.cls.tencentcs.com" -}}
{{- end -}}
{{- if and (eq .Values.consumer.cls.mode "cls") (not .Values.consumer.cls.credentialsSecret) -}}
{{- fail "consumer.cls.credentialsSecret: the CLS sink needs a Secret with secretID and secretKey" -}}
{{- end -}}
{{- if and (eq .Values.consumer.cls.mode "cls") (not .Values.consumer.cls.defaultTopicID) (not .Values.fleet.clusters) -}}
{{- fail "consumer.cls: the CLS sink needs fleet.clusters with cls topics or consumer.cls.defaultTopicID" -}}
{{- end -}}
{{- if and (eq .Values.producer.mode "deployment") (not .Values.producer.webhook.clientCASecret) (not .Values.producer.webhook.tokensSecret) (not .Values.producer.webhook.allowInsecure) -}}
{{- fail "producer.webhook: set clientCASecret or tokensSecret: the webhook authenticates every cluster (allowInsecure: true to opt out)" -}}
{{- end -}}
{{- if and (eq .Values.producer.mode "daemonset") (not .Values.producer.daemonset.cluster) -}}
{{- fail "producer.daemonset.cluster: the cluster id of the tailed audit log is required" -}}
{{- end -}}
{{- if and .Values.consumer.local.enabled (not .Values.consumer.api.tokenSecret) -}}
{{- fail "consumer.api.tokenSecret: the search API needs a bearer token Secret" -}}
{{- end -}}
{{- if and .Values.consumer.local.enabled (not .Values.consumer.api.tlsSecret) (not .Values.consumer.api.allowInsecure) -}}
{{- fail "consumer.api.tlsSecret: the search API serves HTTPS; set a kubernetes.io/tls Secret, or allowInsecure: true behind a TLS proxy or mesh" -}}
{{- end -}}
{{- range $name, $_ := .Values.processor.policies }}
{{- if or (not (regexMatch "^[a-z0-9][a-z0-9._-]*\\.ya?ml$" $name)) (eq $name "rules.yaml") }}
{{- fail (printf "processor.policies: %q is not a file name like strict.yaml (rules.yaml is taken by processor.rules)" $name) }}
{{- end }}
{{- end -}}
{{- $pols := merge (dict "tke-default.yaml" "built in") .Values.processor.policies -}}
{{- $d := default dict .Values.fleet.defaults -}}
{{- if and $d.policy (not (hasKey $pols $d.policy)) -}}
{{- fail (printf "fleet.defaults.policy: %q is not a key of processor.policies" $d.policy) -}}
{{- end -}}
{{- range $id, $c := (default dict .Values.fleet.clusters) }}
{{- if and $c.policy (not (hasKey $pols $c.policy)) }}
{{- fail (printf "fleet.clusters.%s.policy: %q is not a key of processor.policies" $id $c.policy) }}
{{- end }}
{{- end -}}
{{- end -}}
