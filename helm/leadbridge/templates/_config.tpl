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
sub-tables as [path.key] (path "" for the whole document). Null values are left out. No leading or trailing
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
{{- $sub := include "leadbridge.toml.key" $k }}
{{- if $path }}{{ $sub = printf "%s.%s" $path $sub }}{{ end }}
{{- /* A table holding only sub-tables needs no header of its own. */}}
{{- $scalars := not $v }}
{{- range $x := $v }}{{ if and (not (kindIs "invalid" $x)) (not (kindIs "map" $x)) }}{{ $scalars = true }}{{ end }}{{ end }}
{{- if $scalars }}
{{- $lines = append $lines "" }}
{{- $lines = append $lines (printf "[%s]" $sub) }}
{{- end }}
{{- with include "leadbridge.toml.table" (dict "table" $v "path" $sub) }}
{{- $lines = append $lines . }}
{{- end }}
{{- end }}
{{- end }}
{{- join "\n" $lines }}
{{- end }}

{{/*
config.toml and what goes with it (Secret data, checksums), built as one map
and then written as TOML, so that the typed values and the pass-through
(config.extra, organizations.<org>.extra) land in the same table instead of
writing it twice.
*/}}

{{/* A map's keys from camelCase (values) to snake_case (config.toml), recursively. */}}
{{- define "leadbridge.snakeKeys" -}}
{{- $out := dict }}
{{- range $k, $v := . }}
{{- if kindIs "map" $v }}
{{- $_ := set $out (snakecase $k) (include "leadbridge.snakeKeys" $v | fromJson) }}
{{- else if not (kindIs "invalid" $v) }}
{{- $_ := set $out (snakecase $k) $v }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* The whole configuration as JSON. */}}
{{- define "leadbridge.configMap" -}}
{{- $secrets := include "leadbridge.secretsDir" . }}
{{- $c := .Values.config }}
{{- $extra := deepCopy ($c.extra | default dict) }}

{{- $server := dict "listen" "0.0.0.0:8080" }}
{{- $server = mergeOverwrite $server (include "leadbridge.snakeKeys" ($c.server | default dict) | fromJson) }}
{{- with include "leadbridge.publicUrl" . }}{{ $_ := set $server "public_url" . }}{{ end }}

{{- $admin := dict "listen" "0.0.0.0:9090" "token_file" (printf "%s/admin-token" $secrets) }}

{{- $store := include "leadbridge.snakeKeys" ($c.store | default dict) | fromJson }}
{{- if not (include "leadbridge.usePostgres" .) }}
{{- $_ := set $store "url" (printf "sqlite://%s/leadbridge.db" (include "leadbridge.dataDir" .)) }}
{{- end }}

{{- $log := include "leadbridge.snakeKeys" ($c.log | default dict) | fromJson }}
{{- $delivery := include "leadbridge.snakeKeys" ($c.delivery | default dict) | fromJson }}

{{- $orgs := dict }}
{{- range $org, $spec := .Values.organizations }}
{{- $ctx := dict "root" $ "org" $org "spec" $spec }}
{{- $o := dict "dry_run" (eq (toString $spec.dryRun) "true") "endpoint_secrets_file" (printf "%s/%s-endpoint-secrets" $secrets $org) }}
{{- with $spec.url }}{{ $_ := set $o "url" . }}{{ end }}
{{- if include "leadbridge.mappingContent" $ctx }}
{{- $_ := set $o "mapping" (printf "%s/%s.yaml" (include "leadbridge.mappingsDir" $) $org) }}
{{- end }}
{{- if include "leadbridge.renderAuth" $ctx }}
{{- $_ := set $o "auth" (include "leadbridge.authTable" $ctx | fromJson) }}
{{- end }}
{{- if include "leadbridge.hasEmail" $ctx }}
{{- $_ := set $o "email" (include "leadbridge.emailTable" $ctx | fromJson) }}
{{- end }}
{{- $o = mergeOverwrite $o (deepCopy ($spec.extra | default dict)) }}
{{- $_ := set $orgs $org $o }}
{{- end }}

{{- $cfg := dict "server" $server "admin" $admin "store" $store "log" $log "organizations" $orgs }}
{{- if $delivery }}{{ $_ := set $cfg "delivery" $delivery }}{{ end }}
{{- $cfg = mergeOverwrite $cfg $extra }}
{{- toJson $cfg }}
{{- end }}

{{- define "leadbridge.configToml" -}}
# Rendered by the leadbridge Helm chart: change the chart values, not this file.
# Secrets are files under {{ include "leadbridge.secretsDir" . }}.
{{- if include "leadbridge.usePostgres" . }}
# [store] url: PostgreSQL, from the environment variable LEADBRIDGE__STORE__URL (a Secret).
{{- end }}
{{ include "leadbridge.toml.table" (dict "table" (include "leadbridge.configMap" . | fromJson) "path" "") }}
{{ end }}

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
{{- $ctx := dict "root" $ "org" $org "spec" $spec }}
{{ $org }}-endpoint-secrets: {{ printf "%s\n" (join "\n" ($spec.endpointSecrets | default list)) | b64enc | quote }}
{{- $method := include "leadbridge.authMethod" $ctx }}
{{- if eq $method "clientSecret" }}
{{- with dig "auth" "clientSecret" "" $spec }}
{{ $org }}-client-secret: {{ . | b64enc | quote }}
{{- end }}
{{- end }}
{{- if and (eq $method "certificate") (not (dig "auth" "certificate" "existingSecret" "" $spec)) }}
{{- with dig "auth" "certificate" "pem" "" $spec }}
{{ $org }}-certificate: {{ . | b64enc | quote }}
{{- end }}
{{- end }}
{{- if include "leadbridge.smtpPassword" $ctx }}
{{- with dig "email" "smtpPassword" "" $spec }}
{{ $org }}-smtp-password: {{ . | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- with include "leadbridge.testOrganization" . }}
{{- $secret := "" }}
{{- if hasKey $.Values.organizations . }}
{{- $secret = first ((get $.Values.organizations .).endpointSecrets | default (list "")) }}
{{- end }}
{{- if $secret }}
{{- /* The first endpoint secret alone, for the helm test pod's URL. */}}
test-endpoint-secret: {{ $secret | b64enc | quote }}
{{- end }}
{{- end }}
{{- if .Values.store.postgresUrl }}
store-url: {{ .Values.store.postgresUrl | b64enc | quote }}
{{- end }}
{{- end }}

{{/*
Pod template checksum: the rendered config.toml, the chart-managed Secret's
data, and the Secrets the chart only references (existingSecret,
store.existingSecret, certificate Secrets) as found in the cluster at
install or upgrade time (lookup; empty when rendering offline). The mappings
ConfigMap is left out on purpose: the application reloads mappings by
itself, so changing one must not restart the pods.
*/}}
{{- define "leadbridge.configChecksum" -}}
{{- $parts := list (include "leadbridge.configToml" .) }}
{{- if not .Values.existingSecret }}
{{- $parts = append $parts (include "leadbridge.secretData" .) }}
{{- end }}
{{- $referenced := list .Values.existingSecret .Values.store.existingSecret }}
{{- range $org, $spec := .Values.organizations }}
{{- $referenced = append $referenced (include "leadbridge.certificateSecret" (dict "root" $ "org" $org "spec" $spec)) }}
{{- end }}
{{- range $name := compact $referenced | uniq }}
{{- $found := lookup "v1" "Secret" $.Release.Namespace $name }}
{{- if $found }}
{{- $parts = append $parts (printf "%s=%s" $name (toJson ($found.data | default dict))) }}
{{- end }}
{{- end }}
{{- join "\n---\n" $parts | sha256sum }}
{{- end }}
