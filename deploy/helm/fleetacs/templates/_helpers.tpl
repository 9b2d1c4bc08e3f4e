{{/* Names and labels. */}}
{{- define "fleetacs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fleetacs.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "fleetacs.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "fleetacs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fleetacs
{{- end -}}

{{/* Selector of every FleetACS pod of the release. */}}
{{- define "fleetacs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fleetacs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector of one component's pods: (dict "root" $ "component" "gateway"). */}}
{{- define "fleetacs.componentSelector" -}}
{{ include "fleetacs.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fleetacs.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Secret names: the chart's own or the operator's existing one. */}}
{{- define "fleetacs.internalSecret" -}}
{{- default (printf "%s-internal" (include "fleetacs.fullname" .)) .Values.internal.existingSecret -}}
{{- end -}}
{{- define "fleetacs.internalTLSSecret" -}}
{{- default (printf "%s-internal-tls" (include "fleetacs.fullname" .)) .Values.internal.tls.existingSecret -}}
{{- end -}}
{{- define "fleetacs.filesKeySecret" -}}
{{- default (printf "%s-files-url-key" (include "fleetacs.fullname" .)) .Values.files.urlKey.existingSecret -}}
{{- end -}}

{{/* Whether a component serves the public APIs: inventory, tasks, and gateways running the files module. */}}
{{- define "fleetacs.servesAPI" -}}
{{- if or (has .name (list "inventory" "tasks")) (and (eq .name "gateway") .root.Values.files.enabled) }}true{{ end -}}
{{- end -}}

{{/* Whether a component's internal gRPC listener is on the pod network
(else loopback only): the inventory, tasks and session workers, and the
gateways when they run the files module (the workers resolve preset
firmware through its FilesInternalService; docs/deploy.md). */}}
{{- define "fleetacs.internalOnNetwork" -}}
{{- if or (has .name (list "inventory" "tasks" "sessions")) (and (eq .name "gateway") .root.Values.files.enabled) }}true{{ end -}}
{{- end -}}

{{- define "fleetacs.secretsKeySecret" -}}
{{- default (printf "%s-secrets-key" (include "fleetacs.fullname" .)) .Values.secretsKey.existingSecret -}}
{{- end -}}
{{- define "fleetacs.gatewayAuthSecret" -}}
{{- default (printf "%s-gateway-auth" (include "fleetacs.fullname" .)) .Values.gateway.auth.existingSecret -}}
{{- end -}}
{{- define "fleetacs.mongodbSecret" -}}
{{- default (printf "%s-mongodb" (include "fleetacs.fullname" .)) .Values.mongodb.existingSecret -}}
{{- end -}}
{{- define "fleetacs.redisSecret" -}}
{{- default (printf "%s-redis" (include "fleetacs.fullname" .)) .Values.redis.existingSecret -}}
{{- end -}}
{{- define "fleetacs.natsSecret" -}}
{{- default (printf "%s-nats" (include "fleetacs.fullname" .)) .Values.nats.existingSecret -}}
{{- end -}}

{{/* The Redis address fleetacs is given, by mode: the server, the
sentinels, or the cluster's seed nodes (-redis.addr, comma-separated). */}}
{{- define "fleetacs.redisAddr" -}}
{{- $r := .Values.redis -}}
{{- if eq $r.mode "single" -}}
{{- required "redis.addr is required (host:port of Redis)" $r.addr -}}
{{- else if eq $r.mode "sentinel" -}}
{{- if not $r.sentinel.masterName -}}{{- fail "redis.sentinel.masterName is required with redis.mode=sentinel" -}}{{- end -}}
{{- if not $r.sentinel.addrs -}}{{- fail "redis.sentinel.addrs (host:port of each sentinel) is required with redis.mode=sentinel" -}}{{- end -}}
{{- join "," $r.sentinel.addrs -}}
{{- else if eq $r.mode "cluster" -}}
{{- if not $r.cluster.addrs -}}{{- fail "redis.cluster.addrs (host:port of some of the cluster's nodes) is required with redis.mode=cluster" -}}{{- end -}}
{{- if ne (int $r.db) 0 -}}{{- fail "redis.db must be 0 with redis.mode=cluster" -}}{{- end -}}
{{- join "," $r.cluster.addrs -}}
{{- else -}}
{{- fail (printf "redis.mode must be single, sentinel or cluster, got %q" $r.mode) -}}
{{- end -}}
{{- end -}}
