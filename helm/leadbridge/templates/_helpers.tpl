{{/* ---------------------------------------------------------------- names */}}

{{- define "leadbridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name, at most 63 characters (DNS label). */}}
{{- define "leadbridge.fullname" -}}
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

{{- define "leadbridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "leadbridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "leadbridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "leadbridge.labels" -}}
helm.sh/chart: {{ include "leadbridge.chart" . }}
{{ include "leadbridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: leadbridge
{{- end }}

{{- define "leadbridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "leadbridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "leadbridge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Secret with admin token, endpoint and client secrets. */}}
{{- define "leadbridge.secretName" -}}
{{- .Values.existingSecret | default (include "leadbridge.fullname" .) }}
{{- end }}

{{/* ------------------------------------------------------- fixed paths */}}

{{- define "leadbridge.configDir" -}}/etc/leadbridge/config{{- end }}
{{- define "leadbridge.mappingsDir" -}}/etc/leadbridge/mappings{{- end }}
{{- define "leadbridge.secretsDir" -}}/var/run/secrets/leadbridge{{- end }}
{{- define "leadbridge.dataDir" -}}/var/lib/leadbridge{{- end }}

{{/* ------------------------------------------------------------ store */}}

{{/* "true" when the store is PostgreSQL, "" for the embedded SQLite. */}}
{{- define "leadbridge.usePostgres" -}}
{{- if or .Values.store.postgresUrl .Values.store.existingSecret }}true{{ end }}
{{- end }}

{{- define "leadbridge.storeSecretName" -}}
{{- .Values.store.existingSecret | default (include "leadbridge.fullname" .) }}
{{- end }}

{{- define "leadbridge.storeSecretKey" -}}
{{- if .Values.store.existingSecret }}{{ .Values.store.existingSecretKey | default "store-url" }}{{ else }}store-url{{ end }}
{{- end }}

{{/* "true" when more than one pod can run at a time. */}}
{{- define "leadbridge.multiReplica" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled }}true{{ end }}
{{- end }}

{{/* ------------------------------------------------------- public URL */}}

{{/*
External base URL without trailing slash: publicUrl, else the first ingress
host (https when a tls entry covers it), else "".
*/}}
{{- define "leadbridge.publicUrl" -}}
{{- if .Values.publicUrl }}
{{- trimSuffix "/" .Values.publicUrl }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := (first .Values.ingress.hosts).host }}
{{- $https := false }}
{{- range .Values.ingress.tls }}
{{- if or (not .hosts) (has $host .hosts) }}{{ $https = true }}{{ end }}
{{- end }}
{{- printf "%s://%s" (ternary "https" "http" $https) $host }}
{{- end }}
{{- end }}

{{/* -------------------------------------------------- organizations */}}

{{/* Mapping file content for one organization: dict "root" $ "org" name "spec" values. */}}
{{- define "leadbridge.mappingContent" -}}
{{- if .spec.mapping }}
{{- .spec.mapping }}
{{- else }}
{{- .root.Files.Get (printf "files/mappings/%s.yaml" .org) }}
{{- end }}
{{- end }}

{{/* Client and tenant id of one organization (dict "root" $ "spec" values);
with workload identity they default to the ServiceAccount's. */}}
{{- define "leadbridge.clientId" -}}
{{- $id := dig "auth" "clientId" "" .spec }}
{{- if and (not $id) .root.Values.workloadIdentity.enabled }}{{ $id = .root.Values.workloadIdentity.clientId }}{{ end }}
{{- $id }}
{{- end }}

{{- define "leadbridge.tenantId" -}}
{{- $id := dig "auth" "tenantId" "" .spec }}
{{- if and (not $id) .root.Values.workloadIdentity.enabled }}{{ $id = .root.Values.workloadIdentity.tenantId }}{{ end }}
{{- $id }}
{{- end }}

{{/* ------------------------------------------------------- validation */}}

{{/* Refuse to render values that cannot work. Included by the Deployment. */}}
{{- define "leadbridge.validate" -}}
{{- if and (include "leadbridge.multiReplica" .) (not (include "leadbridge.usePostgres" .)) }}
{{- fail "leadbridge: replicaCount > 1 (or autoscaling) needs store.postgresUrl (or store.existingSecret); the embedded SQLite store supports exactly one replica" }}
{{- end }}
{{- if and .Values.store.postgresUrl .Values.store.existingSecret }}
{{- fail "leadbridge: set either store.postgresUrl or store.existingSecret, not both" }}
{{- end }}
{{- if and .Values.store.postgresUrl .Values.existingSecret }}
{{- fail "leadbridge: with existingSecret the chart creates no Secret, so store.postgresUrl cannot be kept; put the URL in a Secret and set store.existingSecret (and store.existingSecretKey)" }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) }}
{{- fail "leadbridge: ingress.enabled needs at least one entry in ingress.hosts" }}
{{- end }}
{{- if not .Values.organizations }}
{{- fail "leadbridge: organizations is empty; configure at least one organization" }}
{{- end }}
{{- if and .Values.workloadIdentity.enabled .Values.serviceAccount.create (not .Values.workloadIdentity.clientId) }}
{{- fail "leadbridge: workloadIdentity.enabled needs workloadIdentity.clientId (the managed identity or app registration client id put on the ServiceAccount)" }}
{{- end }}
{{- range $org, $spec := .Values.organizations }}
{{- if not (regexMatch "^[a-z0-9-]{1,63}$" $org) }}
{{- fail (printf "leadbridge: organization name %q must be 1-63 lowercase letters, digits or '-'" $org) }}
{{- end }}
{{- if not $spec.url }}
{{- fail (printf "leadbridge: organizations.%s.url is required" $org) }}
{{- end }}
{{- if not (include "leadbridge.mappingContent" (dict "root" $ "org" $org "spec" $spec)) }}
{{- fail (printf "leadbridge: no mapping for organization %s: pass --set-file organizations.%s.mapping=mappings/%s.yaml" $org $org $org) }}
{{- end }}
{{- if not $.Values.existingSecret }}
{{- if not $spec.endpointSecrets }}
{{- fail (printf "leadbridge: organizations.%s.endpointSecrets needs at least one secret (or use existingSecret)" $org) }}
{{- end }}
{{- end }}
{{- if not $spec.dryRun }}
{{- if not (include "leadbridge.tenantId" (dict "root" $ "spec" $spec)) }}
{{- fail (printf "leadbridge: organizations.%s.auth.tenantId is required when dryRun is false" $org) }}
{{- end }}
{{- if not (include "leadbridge.clientId" (dict "root" $ "spec" $spec)) }}
{{- fail (printf "leadbridge: organizations.%s.auth.clientId is required when dryRun is false" $org) }}
{{- end }}
{{- if and (not $.Values.workloadIdentity.enabled) (not $.Values.existingSecret) (not (dig "auth" "clientSecret" "" $spec)) }}
{{- fail (printf "leadbridge: organizations.%s.auth.clientSecret is required when dryRun is false (or enable workloadIdentity, or use existingSecret)" $org) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* ------------------------------------------------------------- TOML */}}

{{/*
TOML has no "null" and Helm turns every number into float64, so the values
are written by hand: integral numbers as integers, strings as JSON strings
(a JSON string is a valid TOML basic string), lists as arrays and maps as
inline tables.
*/}}
{{- define "leadbridge.toml.value" -}}
{{- $v := . }}
{{- if kindIs "string" $v }}
{{- toJson $v }}
{{- else if kindIs "bool" $v }}
{{- ternary "true" "false" $v }}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) }}
{{- if eq $v (float64 (int64 $v)) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "int32" $v) (kindIs "uint64" $v) }}
{{- $v }}
{{- else if kindIs "slice" $v }}
{{- $items := list }}
{{- range $v }}{{ $items = append $items (include "leadbridge.toml.value" .) }}{{ end }}
{{- printf "[%s]" (join ", " $items) }}
{{- else if kindIs "map" $v }}
{{- $items := list }}
{{- range $k, $x := $v }}
{{- if not (kindIs "invalid" $x) }}
{{- $items = append $items (printf "%s = %s" (include "leadbridge.toml.key" $k) (include "leadbridge.toml.value" $x)) }}
{{- end }}
{{- end }}
{{- printf "{%s}" (join ", " $items) }}
{{- else }}
{{- fail (printf "leadbridge: cannot write %v (%s) to TOML" $v (kindOf $v)) }}
{{- end }}
{{- end }}

{{- define "leadbridge.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{/*
Body of a table: dict "table" map "path" "a.b". Scalars and arrays first, then
sub-tables as [path.key]. Null values are left out. No leading or trailing
newline: callers indent it with nindent.
*/}}
{{- define "leadbridge.toml.table" -}}
{{- $path := .path }}
{{- $lines := list }}
{{- range $k, $v := .table }}
{{- if and (not (kindIs "invalid" $v)) (not (kindIs "map" $v)) }}
{{- $lines = append $lines (printf "%s = %s" (include "leadbridge.toml.key" $k) (include "leadbridge.toml.value" $v)) }}
{{- end }}
{{- end }}
{{- range $k, $v := .table }}
{{- if kindIs "map" $v }}
{{- $sub := printf "%s.%s" $path (include "leadbridge.toml.key" $k) }}
{{- $lines = append $lines "" }}
{{- $lines = append $lines (printf "[%s]" $sub) }}
{{- with include "leadbridge.toml.table" (dict "table" $v "path" $sub) }}
{{- $lines = append $lines . }}
{{- end }}
{{- end }}
{{- end }}
{{- join "\n" $lines }}
{{- end }}

{{/* ---------------------------------------------------------- secrets */}}

{{/*
Secret data that comes from values (base64, one key per line). The generated
admin token is not part of it: it is random, kept across upgrades by lookup.
*/}}
{{- define "leadbridge.secretData" -}}
{{- if .Values.admin.token }}
admin-token: {{ .Values.admin.token | b64enc | quote }}
{{- end }}
{{- range $org, $spec := .Values.organizations }}
{{ $org }}-endpoint-secrets: {{ printf "%s\n" (join "\n" ($spec.endpointSecrets | default list)) | b64enc | quote }}
{{- with dig "auth" "clientSecret" "" $spec }}
{{- if not $.Values.workloadIdentity.enabled }}
{{ $org }}-client-secret: {{ . | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.store.postgresUrl }}
store-url: {{ .Values.store.postgresUrl | b64enc | quote }}
{{- end }}
{{- end }}

{{/*
Pod template checksum: the rendered config ConfigMap and the chart-managed
Secret's data. The mappings ConfigMap is left out on purpose: the application
reloads mappings by itself, so changing one must not restart the pods.
*/}}
{{- define "leadbridge.configChecksum" -}}
{{- $config := include (print .Template.BasePath "/configmap.yaml") . }}
{{- $secret := "" }}
{{- if not .Values.existingSecret }}
{{- $secret = include "leadbridge.secretData" . }}
{{- end }}
{{- printf "%s\n---\n%s" $config $secret | sha256sum }}
{{- end }}
