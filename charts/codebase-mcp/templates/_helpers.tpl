{{/* Names, labels and shared pod parts of the codebase-mcp chart. */}}

{{- define "codebase-mcp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "codebase-mcp.fullname" -}}
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

{{- define "codebase-mcp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component: name, instance, component. */}}
{{- define "codebase-mcp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "codebase-mcp.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "codebase-mcp.labels" -}}
helm.sh/chart: {{ include "codebase-mcp.chart" .root }}
{{ include "codebase-mcp.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: codebase-mcp
{{- end }}

{{- define "codebase-mcp.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret and key holding DATABASE_URL (the chart's own for database.url and the bundled
     PostgreSQL, else database.existingSecret's). */}}
{{- define "codebase-mcp.databaseSecret" -}}
{{- if and .Values.database.existingSecret (not .Values.postgresql.enabled) }}{{ .Values.database.existingSecret }}{{ else }}{{ include "codebase-mcp.fullname" . }}-database{{ end }}
{{- end }}
{{- define "codebase-mcp.databaseSecretKey" -}}
{{- if and .Values.database.existingSecret (not .Values.postgresql.enabled) }}{{ .Values.database.existingSecretKey }}{{ else }}DATABASE_URL{{ end }}
{{- end }}

{{- define "codebase-mcp.tokensSecret" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.existingSecret }}{{ else }}{{ include "codebase-mcp.fullname" . }}-tokens{{ end }}
{{- end }}

{{- define "codebase-mcp.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "codebase-mcp.databaseSecret" . }}
      key: {{ include "codebase-mcp.databaseSecretKey" . }}
{{- end }}

{{/* What every pod of the chart shares: pull secrets, security context, no API token unless asked. */}}
{{- define "codebase-mcp.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
enableServiceLinks: false
{{- end }}

{{- define "codebase-mcp.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- /* Egress every pod of the chart needs: DNS, and PostgreSQL. */}}
{{- define "codebase-mcp.baseEgress" -}}
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
- ports:
    - {port: {{ .databasePort }}, protocol: TCP}
  {{- if .databaseCIDR }}
  to:
    - ipBlock: {cidr: {{ .databaseCIDR }}}
  {{- end }}
{{- end }}
