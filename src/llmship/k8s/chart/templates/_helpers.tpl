{{/*
Names, labels and the pieces every llmship container shares.
*/}}

{{/* RELEASE-llmship, or RELEASE when it already says llmship, or fullnameOverride. */}}
{{- define "llmship.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 42 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 42 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 42 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
A name made of the fullname and a suffix, fit for a DNS label: call with
(dict "ctx" $ "suffix" "gateway"). A name over 63 characters ends in a hash of itself.
*/}}
{{- define "llmship.name" -}}
{{- $full := printf "%s-%s" (include "llmship.fullname" .ctx) .suffix | lower | replace "." "-" | replace "_" "-" | replace "+" "-" -}}
{{- if gt (len $full) 63 -}}
{{- printf "%s-%s" ($full | trunc 54 | trimSuffix "-") ($full | sha256sum | trunc 8) -}}
{{- else -}}
{{- $full -}}
{{- end -}}
{{- end -}}

{{/* The selector labels of a component: call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "llmship.selectorLabels" -}}
app.kubernetes.io/name: llmship
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every label of a component's objects. */}}
{{- define "llmship.labels" -}}
{{ include "llmship.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The llmship image. */}}
{{- define "llmship.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The Secret with admin-token, database-url (and postgres-password). */}}
{{- define "llmship.secretName" -}}
{{- .Values.existingSecret | default (include "llmship.name" (dict "ctx" . "suffix" "secrets")) -}}
{{- end -}}

{{/* The in-chart PostgreSQL's Service name. */}}
{{- define "llmship.postgresqlName" -}}
{{- include "llmship.name" (dict "ctx" . "suffix" "postgresql") -}}
{{- end -}}

{{/* A label value from a release version: "+" is not allowed in label values. */}}
{{- define "llmship.labelValue" -}}
{{- . | replace "+" "_" | trunc 63 | trimSuffix "-" | trimSuffix "." | trimSuffix "_" -}}
{{- end -}}

{{/*
The environment of every llmship container: the environment, the registry's URL and the
admin token from the Secret, the pod's IP (for the URL it announces), extraEnv.
Call with (dict "ctx" $ "actor" "gateway").
*/}}
{{- define "llmship.env" -}}
- name: LLMSHIP_ENV
  value: {{ .ctx.Values.env | quote }}
- name: LLMSHIP_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "llmship.secretName" .ctx }}
      key: database-url
- name: LLMSHIP_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "llmship.secretName" .ctx }}
      key: admin-token
- name: LLMSHIP_HOME
  value: /var/lib/llmship
- name: LLMSHIP_ACTOR
  value: {{ printf "k8s/%s" .actor | quote }}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- with .ctx.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The writable home of an llmship container (LLMSHIP_HOME). */}}
{{- define "llmship.homeVolumeMount" -}}
- name: home
  mountPath: /var/lib/llmship
{{- end -}}
{{- define "llmship.homeVolume" -}}
- name: home
  emptyDir: {}
{{- end -}}
