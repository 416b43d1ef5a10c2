{{/* Names and labels. */}}
{{- define "tuya-events.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tuya-events.fullname" -}}
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

{{- define "tuya-events.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tuya-events.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tuya-events.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tuya-events.labels" -}}
helm.sh/chart: {{ include "tuya-events.chart" . }}
{{ include "tuya-events.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tuya-events.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tuya-events.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tuya-events.secretName" -}}
{{- default (include "tuya-events.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{/* Where the pod mounts things. */}}
{{- define "tuya-events.configPath" -}}/etc/tuya-events/config/config.yaml{{- end }}
{{- define "tuya-events.secretsDir" -}}/etc/tuya-events/secrets{{- end }}
{{- define "tuya-events.stateDir" -}}/var/lib/tuya-events{{- end }}

{{/*
The daemon's configuration: .Values.config with the keys the chart owns set. Secret keys given
inline are dropped in favour of the mounted file. state.directory is the state volume, so the
device catalogue (catalogue.sqlite3) lands on it next to the dead letters; a catalogue.path off
that volume is refused, as the root file system is read-only.
*/}}
{{- define "tuya-events.config" -}}
{{- $config := deepCopy (default (dict) .Values.config) }}
{{- $tuya := deepCopy (default (dict) (get $config "tuya")) }}
{{- $_ := unset $tuya "access_secret" }}
{{- $key := ternary .Values.secret.accessSecretKey "access_secret" (ne .Values.secret.existingSecret "") }}
{{- $_ := set $tuya "access_secret_file" (printf "%s/%s" (include "tuya-events.secretsDir" .) $key) }}
{{- $_ := set $config "tuya" $tuya }}
{{- $http := deepCopy (default (dict) (get $config "http")) }}
{{- $_ := set $http "enabled" true }}
{{- $_ := set $http "listen" (printf "0.0.0.0:%d" (int .Values.service.port)) }}
{{- $_ := set $config "http" $http }}
{{- $deadLetter := deepCopy (default (dict) (get $config "dead_letter")) }}
{{- $_ := set $deadLetter "path" (printf "%s/dead-letters.sqlite3" (include "tuya-events.stateDir" .)) }}
{{- $_ := set $config "dead_letter" $deadLetter }}
{{- $stateDir := include "tuya-events.stateDir" . }}
{{- $state := deepCopy (default (dict) (get $config "state")) }}
{{- $_ := set $state "directory" $stateDir }}
{{- $_ := set $config "state" $state }}
{{- $catalogue := default (dict) (get $config "catalogue") }}
{{- if and (kindIs "map" $catalogue) (get $catalogue "path") }}
{{- $path := toString (get $catalogue "path") }}
{{- if not (hasPrefix (printf "%s/" $stateDir) (clean $path)) }}
{{- fail (printf "config.catalogue.path %q is not on the state volume %s (the only writable place in the pod): leave it unset, the catalogue then is %s/catalogue.sqlite3" $path $stateDir $stateDir) }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
consumer.shutdown_timeout in whole seconds (rounded up): a number of seconds, or a duration with
ms, s, m or h, as the daemon accepts.
*/}}
{{- define "tuya-events.shutdownSeconds" -}}
{{- $consumer := default (dict) (get (default (dict) .Values.config) "consumer") }}
{{- $text := toString (default "30s" (get $consumer "shutdown_timeout")) | trim }}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $text }}
{{- $unit := trim (trimPrefix $number $text) }}
{{- $factors := dict "" 1.0 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 }}
{{- if or (eq $number "") (not (hasKey $factors $unit)) }}
{{- fail (printf "config.consumer.shutdown_timeout %q: give a duration such as 30s, 2m or 500ms" $text) }}
{{- end }}
{{- mulf (float64 $number) (get $factors $unit) | ceil | int }}
{{- end }}

{{- define "tuya-events.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add (include "tuya-events.shutdownSeconds" . | int) 15 }}
{{- else }}
{{- $given := int .Values.terminationGracePeriodSeconds }}
{{- $drain := include "tuya-events.shutdownSeconds" . | int }}
{{- if le $given $drain }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be longer than config.consumer.shutdown_timeout (%ds)" $given $drain) }}
{{- end }}
{{- $given }}
{{- end }}
{{- end }}
