{{/*
The environment of one component's container: (dict "root" $ "name" "gateway").
Every FleetACS setting is a FLEETACS_* variable (fleetacs -help); secrets come
from Secrets by reference or as mounted files, never as values here.
*/}}
{{- define "fleetacs.env" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $name := .name -}}
{{- $c := index $v $name -}}
{{- $full := include "fleetacs.fullname" $root -}}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_IP
  valueFrom: {fieldRef: {fieldPath: status.podIP}}
- name: GOMEMLIMIT
  valueFrom: {resourceFieldRef: {resource: limits.memory}}
- name: FLEETACS_LOG_FORMAT
  value: {{ $v.log.format | quote }}
- name: FLEETACS_LOG_LEVEL
  value: {{ $v.log.level | quote }}
- name: FLEETACS_DATA_DIR
  value: /var/lib/fleetacs/data
- name: FLEETACS_SERVER_HTTP_ADDR
  value: ":9100"
- name: FLEETACS_INTERNAL_TOKEN_FILE
  value: /run/fleetacs/internal/token
{{- if $v.internal.tls.enabled }}
- name: FLEETACS_INTERNAL_TLS_CERT_FILE
  value: /run/fleetacs/internal-tls/tls.crt
- name: FLEETACS_INTERNAL_TLS_KEY_FILE
  value: /run/fleetacs/internal-tls/tls.key
- name: FLEETACS_INTERNAL_TLS_CA_FILE
  value: /run/fleetacs/internal-tls/ca.crt
- name: FLEETACS_INTERNAL_TLS_SERVER_NAME
  value: {{ $v.internal.tls.serverName | quote }}
{{- end }}
{{- /* The internal listener: on the pod network where other processes call it. */}}
- name: FLEETACS_SERVER_INTERNAL_GRPC_ADDR
  value: {{ if include "fleetacs.internalOnNetwork" . }}":9301"{{ else }}"127.0.0.1:9301"{{ end }}
{{- if ne $name "inventory" }}
- name: FLEETACS_CLIENT_INVENTORY_ADDR
  value: "{{ $full }}-inventory:9301"
{{- end }}
{{- if eq $name "sessions" }}
- name: FLEETACS_CLIENT_TASKS_ADDR
  value: "{{ $full }}-tasks:9301"
{{- /* The firmware files presets ask for: the files module's internal
API, in the gateway pods (docs/provisioning.md, "Firmware"). */}}
{{- if $v.files.enabled }}
- name: FLEETACS_CLIENT_FILES_ADDR
  value: "{{ $full }}-gateway:9301"
{{- end }}
{{- end }}
{{- /* The notifier's replicas share the STUN bindings in Redis. */}}
{{- if has $name (list "gateway" "sessions" "notifier") }}
- name: FLEETACS_REDIS_MODE
  value: {{ $v.redis.mode | quote }}
- name: FLEETACS_REDIS_ADDR
  value: {{ include "fleetacs.redisAddr" $root | quote }}
{{- if eq $v.redis.mode "sentinel" }}
- name: FLEETACS_REDIS_SENTINEL_MASTER
  value: {{ $v.redis.sentinel.masterName | quote }}
{{- end }}
- name: FLEETACS_REDIS_DB
  value: {{ $v.redis.db | quote }}
- name: FLEETACS_REDIS_PREFIX
  value: {{ $v.redis.prefix | quote }}
{{- if or $v.redis.existingSecret $v.redis.password }}
- name: FLEETACS_REDIS_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ include "fleetacs.redisSecret" $root }}, key: password}}
{{- end }}
{{- end }}
{{- if has $name (list "tasks" "sessions" "notifier") }}
- name: FLEETACS_NATS_URL
  valueFrom: {secretKeyRef: {name: {{ include "fleetacs.natsSecret" $root }}, key: url}}
- name: FLEETACS_NATS_STREAM_REPLICAS
  value: {{ $v.nats.streamReplicas | quote }}
{{- end }}
{{- if include "fleetacs.servesAPI" . }}
- name: FLEETACS_SERVER_GRPC_ADDR
  value: ":9300"
- name: FLEETACS_SERVER_API_HTTP_ADDR
  value: ":9380"
{{- if $v.api.tls.enabled }}
- name: FLEETACS_SERVER_GRPC_TLS_CERT_FILE
  value: /run/fleetacs/api-tls/tls.crt
- name: FLEETACS_SERVER_GRPC_TLS_KEY_FILE
  value: /run/fleetacs/api-tls/tls.key
{{- if $v.api.tls.clientCA }}
- name: FLEETACS_SERVER_GRPC_TLS_CLIENT_CA_FILE
  value: /run/fleetacs/api-tls/ca.crt
{{- end }}
{{- end }}
{{- end }}
{{- if eq $name "inventory" }}
- name: FLEETACS_INVENTORY_STORE
  value: mongodb
- name: FLEETACS_INVENTORY_MONGODB_URI
  valueFrom: {secretKeyRef: {name: {{ include "fleetacs.mongodbSecret" $root }}, key: uri}}
- name: FLEETACS_INVENTORY_MONGODB_DATABASE
  value: {{ $v.mongodb.database | quote }}
- name: FLEETACS_INVENTORY_SECRETS_KEY_FILE
  value: /run/fleetacs/secrets-key/secrets.key
{{- end }}
{{- if eq $name "tasks" }}
- name: FLEETACS_TASKS_STORE
  value: mongodb
- name: FLEETACS_TASKS_MONGODB_URI
  valueFrom: {secretKeyRef: {name: {{ include "fleetacs.mongodbSecret" $root }}, key: uri}}
- name: FLEETACS_TASKS_MONGODB_DATABASE
  value: {{ $v.mongodb.database | quote }}
- name: FLEETACS_TASKS_SECRETS_KEY_FILE
  value: /run/fleetacs/secrets-key/secrets.key
{{- end }}
{{- if eq $name "sessions" }}
- name: FLEETACS_SESSIONS_WORKER_ID
  value: "$(POD_NAME)"
{{- /* The host alone: fleetacs joins it with the internal port and
brackets an IPv6 pod IP, which "$(POD_IP):9301" would not. */}}
- name: FLEETACS_SESSIONS_ADVERTISE_HOST
  value: "$(POD_IP)"
- name: FLEETACS_SESSIONS_SECRETS_KEY_FILE
  value: /run/fleetacs/secrets-key/secrets.key
- name: FLEETACS_SESSIONS_DRAIN_TIMEOUT
  value: {{ $c.drainTimeout | quote }}
{{- end }}
{{- if eq $name "gateway" }}
- name: FLEETACS_GATEWAY_LISTEN_ADDR
  value: ":7547"
- name: FLEETACS_GATEWAY_DRAIN_GRACE
  value: {{ $c.drainGrace | quote }}
{{- if $c.tls.enabled }}
- name: FLEETACS_GATEWAY_TLS_LISTEN_ADDR
  value: ":7548"
- name: FLEETACS_GATEWAY_TLS_CERT_FILE
  value: /run/fleetacs/gateway-tls/tls.crt
- name: FLEETACS_GATEWAY_TLS_KEY_FILE
  value: /run/fleetacs/gateway-tls/tls.key
- name: FLEETACS_GATEWAY_TLS_CLIENT_AUTH
  value: {{ $c.tls.clientAuth | quote }}
{{- if ne $c.tls.clientAuth "none" }}
- name: FLEETACS_GATEWAY_TLS_CLIENT_CA_FILE
  value: /run/fleetacs/gateway-tls/ca.crt
{{- end }}
{{- end }}
{{- with $c.trustedProxies }}
- name: FLEETACS_GATEWAY_TRUSTED_PROXIES
  value: {{ join "," . | quote }}
{{- end }}
- name: FLEETACS_GATEWAY_AUTH_ANONYMOUS
  value: {{ $c.auth.anonymous | quote }}
- name: FLEETACS_GATEWAY_AUTH_NONCE_SECRET
  valueFrom: {secretKeyRef: {name: {{ include "fleetacs.gatewayAuthSecret" $root }}, key: nonce-secret}}
{{- if $c.auth.existingSecret }}
- name: FLEETACS_GATEWAY_AUTH_ONBOARDING_SECRET
  valueFrom: {secretKeyRef: {name: {{ $c.auth.existingSecret }}, key: onboarding-secret, optional: true}}
- name: FLEETACS_GATEWAY_AUTH_SHARED_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ $c.auth.existingSecret }}, key: shared-password, optional: true}}
{{- end }}
{{- with $c.auth.sharedUsername }}
- name: FLEETACS_GATEWAY_AUTH_SHARED_USERNAME
  value: {{ . | quote }}
{{- end }}
- name: FLEETACS_GATEWAY_AUTH_SHARED_SCOPE
  value: {{ $c.auth.sharedScope | quote }}
{{- end }}
{{- if and (eq $name "gateway") $v.files.enabled }}
- name: FLEETACS_FILES_STORE
  value: mongodb
- name: FLEETACS_FILES_MONGODB_URI
  valueFrom: {secretKeyRef: {name: {{ include "fleetacs.mongodbSecret" $root }}, key: uri}}
- name: FLEETACS_FILES_MONGODB_DATABASE
  value: {{ $v.mongodb.database | quote }}
{{- if eq $v.files.blob "s3" }}
{{- $s3 := $v.files.s3 }}
- name: FLEETACS_FILES_BLOB
  value: s3
- name: FLEETACS_FILES_S3_ENDPOINT
  value: {{ required "files.s3.endpoint is required with files.blob=s3 (host[:port] of the S3 store)" $s3.endpoint | quote }}
- name: FLEETACS_FILES_S3_BUCKET
  value: {{ required "files.s3.bucket is required with files.blob=s3" $s3.bucket | quote }}
- name: FLEETACS_FILES_S3_PREFIX
  value: {{ $s3.prefix | quote }}
- name: FLEETACS_FILES_S3_REGION
  value: {{ $s3.region | quote }}
- name: FLEETACS_FILES_S3_PATH_STYLE
  value: {{ $s3.pathStyle | quote }}
- name: FLEETACS_FILES_S3_INSECURE
  value: {{ $s3.insecure | quote }}
- name: FLEETACS_FILES_S3_ACCESS_KEY_FILE
  value: /run/fleetacs/files-s3/access-key
- name: FLEETACS_FILES_S3_SECRET_KEY_FILE
  value: /run/fleetacs/files-s3/secret-key
{{- if $s3.caSecret }}
- name: FLEETACS_FILES_S3_CA_FILE
  value: /run/fleetacs/files-s3-ca/ca.crt
{{- end }}
{{- else }}
- name: FLEETACS_FILES_BLOB
  value: gridfs
- name: FLEETACS_FILES_GRIDFS_BUCKET
  value: {{ $v.files.gridfsBucket | quote }}
{{- end }}
- name: FLEETACS_FILES_URL_KEY_FILE
  value: /run/fleetacs/files-url-key/files-url.key
- name: FLEETACS_FILES_BASE_URL
  value: {{ required "files.baseURL is required with files.enabled (the URL CPEs reach /files/ at)" $v.files.baseURL | quote }}
- name: FLEETACS_FILES_DEVICE_AUTH
  value: {{ $v.files.deviceAuth | quote }}
{{- end }}
{{- if eq $name "notifier" }}
- name: FLEETACS_NOTIFIER_STUN_ADDR
  value: {{ if $c.stun.enabled }}":3478"{{ else }}""{{ end }}
{{- with $c.allowedNetworks }}
- name: FLEETACS_NOTIFIER_ALLOWED_NETWORKS
  value: {{ join "," . | quote }}
{{- end }}
{{- with $c.deniedNetworks }}
- name: FLEETACS_NOTIFIER_DENIED_NETWORKS
  value: {{ join "," . | quote }}
{{- end }}
{{- end }}
{{- if $v.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $v.otel.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $v.otel.protocol | quote }}
- name: OTEL_EXPORTER_OTLP_INSECURE
  value: {{ $v.otel.insecure | quote }}
- name: OTEL_TRACES_SAMPLER
  value: parentbased_traceidratio
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $v.otel.sampleRatio | quote }}
- name: OTEL_SERVICE_NAME
  value: "fleetacs-{{ $name }}"
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with $c.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Container ports of a component. */}}
{{- define "fleetacs.ports" -}}
- {name: admin, containerPort: 9100, protocol: TCP}
{{- if include "fleetacs.internalOnNetwork" . }}
- {name: internal-grpc, containerPort: 9301, protocol: TCP}
{{- end }}
{{- if include "fleetacs.servesAPI" . }}
- {name: grpc, containerPort: 9300, protocol: TCP}
- {name: api-http, containerPort: 9380, protocol: TCP}
{{- end }}
{{- if eq .name "gateway" }}
- {name: cwmp, containerPort: 7547, protocol: TCP}
{{- if .root.Values.gateway.tls.enabled }}
- {name: cwmps, containerPort: 7548, protocol: TCP}
{{- end }}
{{- end }}
{{- if and (eq .name "notifier") .root.Values.notifier.stun.enabled }}
- {name: stun, containerPort: 3478, protocol: UDP}
{{- end }}
{{- end -}}
