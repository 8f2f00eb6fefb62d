{{/* Kubernetes names cannot hold "_": payment_gateway is payment-gateway there. */}}
{{- define "paysys.name" -}}
{{- printf "%s-%s" .root.Release.Name (.service | replace "_" "-") | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "paysys.labels" -}}
app.kubernetes.io/name: paysys
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- with .service }}
app.kubernetes.io/component: {{ . | replace "_" "-" }}
{{- end }}
{{- end -}}

{{- define "paysys.selector" -}}
app.kubernetes.io/name: paysys
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .service | replace "_" "-" }}
{{- end -}}

{{/* The image, by digest when one is given. */}}
{{- define "paysys.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}
{{- end -}}

{{/* The secrets each process needs, and nothing more. */}}
{{- define "paysys.secretKeys" -}}
{{- $keys := list "PAYSYS_JWT_SECRET" "PAYSYS_INTERNAL_TOKEN" -}}
{{- if or (eq . "users") (eq . "notifications") -}}
{{- $keys = concat $keys (list "PAYSYS_DATA_KEYS" "PAYSYS_BLIND_INDEX_KEY") -}}
{{- end -}}
{{- if eq . "transactions" -}}
{{- $keys = append $keys "PAYSYS_IDEMPOTENCY_HASH_KEY" -}}
{{- end -}}
{{- join "," $keys -}}
{{- end -}}

{{/* The Secret's keys one service needs beyond the shared ones (SMTP AUTH). */}}
{{- define "paysys.serviceSecretKeys" -}}
{{- $root := .root -}}
{{- if and (eq .service "notifications") $root.Values.smtp.auth -}}
SMTP_USERNAME,SMTP_PASSWORD
{{- end -}}
{{- end -}}

{{/* One URL from values or from a key of the existing Secret. */}}
{{- define "paysys.urlEnv" -}}
- name: {{ .name }}
{{- if .ref.secretKey }}
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.existingSecret }}
      key: {{ .ref.secretKey }}
{{- else }}
  value: {{ required (printf "%s: set a url or a secretKey" .name) .ref.url | quote }}
{{- end }}
{{- end -}}

{{/* The environment of one process (and of its service's migration Job). */}}
{{- define "paysys.env" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $svc := .service -}}
{{- $own := dict -}}
{{- if hasKey $v.services $svc -}}{{- $own = index $v.services $svc -}}{{- end -}}
{{- $hosts := dict -}}
{{- range $name, $_ := $v.services -}}
{{- $_ := set $hosts $name (include "paysys.name" (dict "root" $root "service" $name)) -}}
{{- end }}
- name: PAYSYS_ENV
  value: {{ $v.environment | quote }}
- name: PAYSYS_BIND_HOST
  value: "0.0.0.0"
- name: PAYSYS_SERVICE_HOSTS
  value: {{ toJson $hosts | quote }}
{{- range $name, $s := $v.services }}
- name: PAYSYS_{{ upper $name }}_PORT
  value: {{ $s.port | quote }}
{{- end }}
- name: PAYSYS_MIGRATE_ON_START
  value: {{ (not $v.migrations.enabled) | quote }}
{{- $pg := $v.postgres -}}
{{- if and $own.postgres (or $own.postgres.url $own.postgres.secretKey) -}}{{- $pg = $own.postgres -}}{{- end }}
{{ include "paysys.urlEnv" (dict "root" $root "name" "DATABASE_URL" "ref" $pg) }}
{{ include "paysys.urlEnv" (dict "root" $root "name" "REDIS_URL" "ref" $v.redis) }}
{{ include "paysys.urlEnv" (dict "root" $root "name" "MONGODB_URL" "ref" $v.mongodb) }}
- name: PAYSYS_MONGODB_DATABASE
  value: {{ $v.mongodb.database | quote }}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ $v.kafka.bootstrapServers | quote }}
- name: PAYSYS_KAFKA_TOPIC_PREFIX
  value: {{ $v.kafka.topicPrefix | quote }}
- name: PAYSYS_KAFKA_SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
- name: PAYSYS_KAFKA_REPLICATION_FACTOR
  value: {{ $v.kafka.replicationFactor | quote }}
- name: PAYSYS_KAFKA_MIN_INSYNC_REPLICAS
  value: {{ $v.kafka.minInsyncReplicas | quote }}
{{- if hasPrefix "SASL" $v.kafka.securityProtocol }}
- name: PAYSYS_KAFKA_SASL_MECHANISM
  value: {{ $v.kafka.saslMechanism | quote }}
{{- range list "PAYSYS_KAFKA_SASL_USERNAME" "PAYSYS_KAFKA_SASL_PASSWORD" }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $v.existingSecret }}
      key: {{ . }}
{{- end }}
{{- end }}
- name: SMTP_HOST
  value: {{ $v.smtp.host | quote }}
- name: SMTP_PORT
  value: {{ $v.smtp.port | quote }}
- name: SMTP_STARTTLS
  value: {{ $v.smtp.starttls | quote }}
{{- range (compact (splitList "," (include "paysys.serviceSecretKeys" .))) }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $v.existingSecret }}
      key: {{ . }}
{{- end }}
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- range (splitList "," (include "paysys.secretKeys" $svc)) }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $v.existingSecret }}
      key: {{ . }}
{{- end }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.existingSecret }}
      key: PGPASSWORD
      optional: true
{{- range $k, $val := $v.extraEnv }}
- name: {{ $k }}
{{- if kindIs "map" $val }}
  {{- toYaml $val | nindent 2 }}
{{- else }}
  value: {{ $val | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "paysys.podSpecCommon" -}}
serviceAccountName: {{ .Release.Name }}-paysys
automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
{{ include "paysys.podPlacement" . }}
{{- end -}}

{{- define "paysys.podPlacement" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
