{{/*
Organizations: credentials, e-mail, what each one needs in the Secret and
the pod, and the checks that refuse values the application would refuse.
Helpers take (dict "root" $ "org" name "spec" values).
*/}}

{{/* Mapping file content for one organization. */}}
{{- define "leadbridge.mappingContent" -}}
{{- if .spec.mapping }}
{{- .spec.mapping }}
{{- else }}
{{- .root.Files.Get (printf "files/mappings/%s.yaml" .org) }}
{{- end }}
{{- end }}

{{/* Client and tenant id; with workload identity they default to the ServiceAccount's. */}}
{{- define "leadbridge.clientId" -}}
{{- $id := dig "auth" "clientId" "" .spec }}
{{- if and (not $id) .root.Values.workloadIdentity.enabled (eq (include "leadbridge.authMethod" .) "workloadIdentity") }}{{ $id = .root.Values.workloadIdentity.clientId }}{{ end }}
{{- $id }}
{{- end }}

{{- define "leadbridge.tenantId" -}}
{{- $id := dig "auth" "tenantId" "" .spec }}
{{- if and (not $id) .root.Values.workloadIdentity.enabled (eq (include "leadbridge.authMethod" .) "workloadIdentity") }}{{ $id = .root.Values.workloadIdentity.tenantId }}{{ end }}
{{- $id }}
{{- end }}

{{/*
auth.method as written in values: clientSecret, certificate,
workloadIdentity or managedIdentity. Default: workloadIdentity when
workloadIdentity.enabled, else clientSecret.
*/}}
{{- define "leadbridge.authMethod" -}}
{{- $method := dig "auth" "method" "" .spec }}
{{- if not $method }}{{ $method = ternary "workloadIdentity" "clientSecret" .root.Values.workloadIdentity.enabled }}{{ end }}
{{- $method }}
{{- end }}

{{- define "leadbridge.emailTransport" -}}
{{- dig "email" "transport" "smtp" .spec | default "smtp" }}
{{- end }}

{{/* "true" when the organization sends e-mail. */}}
{{- define "leadbridge.hasEmail" -}}
{{- if dig "email" "to" list .spec }}true{{ end }}
{{- end }}

{{/* "true" when the certificate comes from a Secret of its own. */}}
{{- define "leadbridge.certificateSecret" -}}
{{- if eq (include "leadbridge.authMethod" .) "certificate" }}{{ dig "auth" "certificate" "existingSecret" "" .spec }}{{ end }}
{{- end }}

{{/* Volume name of an organization's certificate Secret (org names are up to 63 characters). */}}
{{- define "leadbridge.certificateVolume" -}}
{{- printf "certificate-%s" (sha256sum .org | trunc 10) }}
{{- end }}

{{/* "true" when the organization's credential material is all there. */}}
{{- define "leadbridge.credentialsComplete" -}}
{{- $method := include "leadbridge.authMethod" . }}
{{- $tenant := include "leadbridge.tenantId" . }}
{{- $client := include "leadbridge.clientId" . }}
{{- $existing := .root.Values.existingSecret }}
{{- if eq $method "clientSecret" }}
{{- if and $tenant $client (or $existing (dig "auth" "clientSecret" "" .spec)) }}true{{ end }}
{{- else if eq $method "certificate" }}
{{- if and $tenant $client (or $existing (dig "auth" "certificate" "existingSecret" "" .spec) (dig "auth" "certificate" "pem" "" .spec)) }}true{{ end }}
{{- else }}true{{- end }}
{{- end }}

{{/*
"true" when [organizations.<org>.auth] is written. The application checks
[auth] whenever it is present, so a dry-run organization gets it only when
asked for (auth.method, Graph e-mail) or once its credentials are complete.
*/}}
{{- define "leadbridge.renderAuth" -}}
{{- $live := and .spec.url (not .spec.dryRun) }}
{{- $graph := and (include "leadbridge.hasEmail" .) (eq (include "leadbridge.emailTransport" .) "graph") }}
{{- if or $live $graph (dig "auth" "method" "" .spec) (include "leadbridge.credentialsComplete" .) }}true{{ end }}
{{- end }}

{{/* The [organizations.<org>.auth] table as JSON. */}}
{{- define "leadbridge.authTable" -}}
{{- $secrets := include "leadbridge.secretsDir" .root }}
{{- $method := include "leadbridge.authMethod" . }}
{{- $auth := .spec.auth | default dict }}
{{- $t := dict }}
{{- with $auth.authorityHost }}{{ $_ := set $t "authority_host" . }}{{ end }}
{{- with include "leadbridge.tenantId" . }}{{ if ne $method "managedIdentity" }}{{ $_ := set $t "tenant_id" . }}{{ end }}{{ end }}
{{- with include "leadbridge.clientId" . }}{{ $_ := set $t "client_id" . }}{{ end }}
{{- with $auth.scope }}{{ $_ := set $t "scope" . }}{{ end }}
{{- if eq $method "clientSecret" }}
{{- $_ := set $t "client_secret_file" (printf "%s/%s-client-secret" $secrets .org) }}
{{- else if eq $method "certificate" }}
{{- $_ := set $t "method" "certificate" }}
{{- $cert := $auth.certificate | default dict }}
{{- if $cert.existingSecret }}
{{- $dir := printf "%s/%s" (include "leadbridge.certificatesDir" .root) .org }}
{{- $_ := set $t "certificate_file" (printf "%s/%s" $dir ($cert.certificateKey | default "tls.crt")) }}
{{- if ne (toString $cert.privateKeyKey) "" }}
{{- $_ := set $t "private_key_file" (printf "%s/%s" $dir $cert.privateKeyKey) }}
{{- else if not (hasKey $cert "privateKeyKey") }}
{{- $_ := set $t "private_key_file" (printf "%s/tls.key" $dir) }}
{{- end }}
{{- else }}
{{- $_ := set $t "certificate_file" (printf "%s/%s-certificate" $secrets .org) }}
{{- end }}
{{- with $cert.assertionAlg }}{{ $_ := set $t "assertion_alg" . }}{{ end }}
{{- else if eq $method "workloadIdentity" }}
{{- $_ := set $t "method" "workload_identity" }}
{{- else if eq $method "managedIdentity" }}
{{- $_ := set $t "method" "managed_identity" }}
{{- with $auth.imdsEndpoint }}{{ $_ := set $t "imds_endpoint" . }}{{ end }}
{{- $_ := unset $t "authority_host" }}
{{- end }}
{{- toJson $t }}
{{- end }}

{{/* The [organizations.<org>.email] table as JSON: camelCase values to snake_case keys. */}}
{{- define "leadbridge.emailTable" -}}
{{- $t := dict }}
{{- range $k, $v := .spec.email }}
{{- if and (ne $k "smtpPassword") (not (kindIs "invalid" $v)) (ne (toString $v) "") }}
{{- $_ := set $t (snakecase $k) $v }}
{{- end }}
{{- end }}
{{- if include "leadbridge.smtpPassword" . }}
{{- $_ := set $t "smtp_password_file" (printf "%s/%s-smtp-password" (include "leadbridge.secretsDir" .root) .org) }}
{{- end }}
{{- toJson $t }}
{{- end }}

{{/* "true" when an SMTP password file is mounted for the organization. */}}
{{- define "leadbridge.smtpPassword" -}}
{{- if and (include "leadbridge.hasEmail" .) (eq (include "leadbridge.emailTransport" .) "smtp") }}
{{- if or (dig "email" "smtpPassword" "" .spec) (and .root.Values.existingSecret (dig "email" "smtpUsername" "" .spec)) }}true{{ end }}
{{- end }}
{{- end }}

{{/* TCP ports of the organizations' SMTP servers (JSON list), for the NetworkPolicy. */}}
{{- define "leadbridge.smtpPorts" -}}
{{- $ports := list }}
{{- range $org, $spec := .Values.organizations }}
{{- $ctx := dict "root" $ "org" $org "spec" $spec }}
{{- if and (include "leadbridge.hasEmail" $ctx) (eq (include "leadbridge.emailTransport" $ctx) "smtp") }}
{{- $url := urlParse (dig "email" "smtpUrl" "" $spec) }}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" }}
{{- if $port }}{{ $ports = append $ports (int $port) }}
{{- else if eq $url.scheme "smtps" }}{{ $ports = append $ports 465 }}
{{- else }}{{ $ports = append $ports 587 }}{{ end }}
{{- end }}
{{- end }}
{{- toJson (uniq $ports) }}
{{- end }}

{{/* "true" when some organization uses the instance metadata endpoint. */}}
{{- define "leadbridge.usesManagedIdentity" -}}
{{- range $org, $spec := .Values.organizations }}
{{- if eq (include "leadbridge.authMethod" (dict "root" $ "org" $org "spec" $spec)) "managedIdentity" }}true{{ end }}
{{- end }}
{{- end }}

{{/*
The organization `helm test` sends its lead to: tests.organization, else the
first in dry run, else none ("").
*/}}
{{- define "leadbridge.testOrganization" -}}
{{- $chosen := .Values.tests.organization }}
{{- if not $chosen }}
{{- range $org, $spec := .Values.organizations }}
{{- if and (not $chosen) $spec.dryRun }}{{ $chosen = $org }}{{ end }}
{{- end }}
{{- end }}
{{- $chosen }}
{{- end }}

{{/* ------------------------------------------------------- validation */}}

{{- define "leadbridge.validateOrganization" -}}
{{- $org := .org }}
{{- $spec := .spec }}
{{- $p := printf "leadbridge: organizations.%s" $org }}
{{- if not (regexMatch "^[a-z0-9-]{1,63}$" $org) }}
{{- fail (printf "leadbridge: organization name %q must be 1-63 lowercase letters, digits or '-'" $org) }}
{{- end }}
{{- $email := include "leadbridge.hasEmail" . }}
{{- if and (not $spec.url) (not $email) }}
{{- fail (printf "%s needs url (its Dataverse environment) or email (e-mail only), or both" $p) }}
{{- end }}
{{- if and $spec.url (not (include "leadbridge.mappingContent" .)) }}
{{- fail (printf "leadbridge: no mapping for organization %s: pass --set-file organizations.%s.mapping=mappings/%s.yaml" $org $org $org) }}
{{- end }}
{{- if not .root.Values.existingSecret }}
{{- if not $spec.endpointSecrets }}
{{- fail (printf "%s.endpointSecrets needs at least one secret (or use existingSecret)" $p) }}
{{- end }}
{{- if not $spec.dryRun }}
{{- range $spec.endpointSecrets }}
{{- if hasPrefix "change-me" . }}
{{- fail (printf "%s.endpointSecrets holds a placeholder (%s...): a live organization needs a secret of its own (openssl rand -hex 24)" $p (trunc 9 .)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- $method := include "leadbridge.authMethod" . }}
{{- if include "leadbridge.renderAuth" . }}
{{- if and (eq $method "workloadIdentity") (not .root.Values.workloadIdentity.enabled) }}
{{- fail (printf "%s.auth.method workloadIdentity needs workloadIdentity.enabled (the ServiceAccount annotation and pod label)" $p) }}
{{- end }}
{{- if or (eq $method "clientSecret") (eq $method "certificate") }}
{{- if not (include "leadbridge.tenantId" .) }}
{{- fail (printf "%s.auth.tenantId is required (%s credentials%s)" $p $method (ternary "" ", dryRun is false" (eq (toString $spec.dryRun) "true"))) }}
{{- end }}
{{- if not (include "leadbridge.clientId" .) }}
{{- fail (printf "%s.auth.clientId is required (%s credentials%s)" $p $method (ternary "" ", dryRun is false" (eq (toString $spec.dryRun) "true"))) }}
{{- end }}
{{- end }}
{{- if and (eq $method "clientSecret") (not .root.Values.existingSecret) (not (dig "auth" "clientSecret" "" $spec)) }}
{{- fail (printf "%s.auth.clientSecret is required when dryRun is false (or use auth.method certificate, workloadIdentity or managedIdentity, or existingSecret)" $p) }}
{{- end }}
{{- if and (eq $method "certificate") (not (include "leadbridge.credentialsComplete" .)) }}
{{- fail (printf "%s.auth.certificate needs existingSecret (a Secret with the certificate and key) or pem (or the key %s-certificate in existingSecret)" $p $org) }}
{{- end }}
{{- end }}
{{- if $email }}
{{- if not (dig "email" "from" "" $spec) }}
{{- fail (printf "%s.email.from is required" $p) }}
{{- end }}
{{- $transport := include "leadbridge.emailTransport" . }}
{{- if and (eq $transport "smtp") (not (dig "email" "smtpUrl" "" $spec)) }}
{{- fail (printf "%s.email.smtpUrl is required with transport smtp" $p) }}
{{- end }}
{{- if and (eq $transport "smtp") (dig "email" "smtpUsername" "" $spec) (not (include "leadbridge.smtpPassword" .)) }}
{{- fail (printf "%s.email.smtpUsername needs email.smtpPassword (or existingSecret with the key %s-smtp-password)" $p $org) }}
{{- end }}
{{- if and (eq $transport "smtp") (dig "email" "smtpPassword" "" $spec) (not (dig "email" "smtpUsername" "" $spec)) }}
{{- fail (printf "%s.email.smtpPassword needs email.smtpUsername (both or neither)" $p) }}
{{- end }}
{{- if and (eq $transport "graph") (dig "email" "smtpUrl" "" $spec) }}
{{- fail (printf "%s.email.smtpUrl is only used with transport smtp" $p) }}
{{- end }}
{{- end }}
{{- end }}
