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

{{/* Secret with the admin token, endpoint secrets and credentials. */}}
{{- define "leadbridge.secretName" -}}
{{- .Values.existingSecret | default (include "leadbridge.fullname" .) }}
{{- end }}

{{/* ------------------------------------------------------- fixed paths */}}

{{- define "leadbridge.configDir" -}}/etc/leadbridge/config{{- end }}
{{- define "leadbridge.mappingsDir" -}}/etc/leadbridge/mappings{{- end }}
{{- define "leadbridge.secretsDir" -}}/var/run/secrets/leadbridge{{- end }}
{{- define "leadbridge.dataDir" -}}/var/lib/leadbridge{{- end }}
{{/* Certificates from their own Secrets: <certificatesDir>/<org>/. */}}
{{- define "leadbridge.certificatesDir" -}}/var/run/secrets/leadbridge-certificates{{- end }}

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

{{/* ------------------------------------------------------- durations */}}

{{/*
Whole seconds of a duration written for the application ("20s", "1m 30s",
"2min"); sub-second parts count as 0. Used to check the termination grace
period against shutdown_grace.
*/}}
{{- define "leadbridge.durationSeconds" -}}
{{- $units := dict "s" 1 "sec" 1 "secs" 1 "second" 1 "seconds" 1 "m" 60 "min" 60 "mins" 60 "minute" 60 "minutes" 60 "h" 3600 "hr" 3600 "hrs" 3600 "hour" 3600 "hours" 3600 "d" 86400 "day" 86400 "days" 86400 "w" 604800 "week" 604800 "weeks" 604800 }}
{{- $total := 0 }}
{{- range regexFindAll "[0-9]+\\s*[a-zA-Z]+" (toString .) -1 }}
{{- $n := int (regexFind "^[0-9]+" .) }}
{{- $unit := regexFind "[a-zA-Z]+$" . }}
{{- $total = add $total (mul $n (get $units $unit | default 0)) }}
{{- end }}
{{- $total }}
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
{{- fail "leadbridge: no organization configured. Set at least one, e.g. --set organizations.contoso.url=https://contoso.crm4.dynamics.com --set organizations.contoso.dryRun=true --set organizations.contoso.endpointSecrets[0]=$(openssl rand -hex 24) (see the chart's README, and ci/defaults.yaml)" }}
{{- end }}
{{- if and .Values.workloadIdentity.enabled .Values.serviceAccount.create (not .Values.workloadIdentity.clientId) }}
{{- fail "leadbridge: workloadIdentity.enabled needs workloadIdentity.clientId (the managed identity or app registration client id put on the ServiceAccount)" }}
{{- end }}
{{- range $org, $spec := .Values.organizations }}
{{- include "leadbridge.validateOrganization" (dict "root" $ "org" $org "spec" $spec) }}
{{- end }}
{{- with .Values.tests.organization }}
{{- if not (hasKey $.Values.organizations .) }}
{{- fail (printf "leadbridge: tests.organization %q is not one of the organizations" .) }}
{{- end }}
{{- end }}
{{- /* The pod must outlive the pre-stop pause plus the application's own shutdown. */}}
{{- $grace := dig "delivery" "shutdownGrace" "" .Values.config | default (dig "extra" "delivery" "shutdown_grace" "20s" .Values.config) }}
{{- $needed := add (int .Values.preStopSleepSeconds) (int (include "leadbridge.durationSeconds" $grace)) 5 }}
{{- if lt (int .Values.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "leadbridge: terminationGracePeriodSeconds (%d) must be at least preStopSleepSeconds (%d) + config.delivery.shutdownGrace (%s) + 5 = %d, or a rollout kills deliveries in flight" (int .Values.terminationGracePeriodSeconds) (int .Values.preStopSleepSeconds) $grace (int $needed)) }}
{{- end }}
{{- end }}

{{/* The helm test pod: not matched by the Service's selector. */}}
{{- define "leadbridge.testSelectorLabels" -}}
app.kubernetes.io/name: {{ include "leadbridge.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
