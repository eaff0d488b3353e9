{{- define "mqtt-authproxy.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mqtt-authproxy.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mqtt-authproxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mqtt-authproxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mqtt-authproxy.labels" -}}
{{ include "mqtt-authproxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "mqtt-authproxy.ticketSecretName" -}}
{{- .Values.ticketSecret.existingSecret | default (printf "%s-ticket-secret" (include "mqtt-authproxy.fullname" .)) -}}
{{- end -}}
