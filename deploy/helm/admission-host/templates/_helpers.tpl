{{/*
The app.kubernetes.io/name label: the chart's name, or nameOverride.
*/}}
{{- define "admission-host.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every object: fullnameOverride; else the release name if it contains the name;
else "<release>-<name>".
*/}}
{{- define "admission-host.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "admission-host.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
metadata: name, namespace and labels of a namespaced object. Call with (list . "suffix"); an
empty suffix names it after the fullname.
*/}}
{{- define "admission-host.metadata" -}}
{{- $ := index . 0 -}}
{{- $suffix := index . 1 -}}
name: {{ include "admission-host.fullname" $ }}{{ $suffix }}
namespace: {{ $.Release.Namespace }}
labels:
  {{- include "admission-host.labels" $ | nindent 2 }}
{{- end }}

{{/*
metadata.labels of every object: the pods' selector label plus Helm's bookkeeping labels.
*/}}
{{- define "admission-host.labels" -}}
{{ include "admission-host.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The label that selects the host's pods (Deployment, PDB, Service), and that keeps them out of
the webhook's objectSelector.
*/}}
{{- define "admission-host.selectorLabels" -}}
app.kubernetes.io/name: {{ include "admission-host.name" . }}
{{- end }}

{{/*
The host's ServiceAccount as an RBAC subject.
*/}}
{{- define "admission-host.subject" -}}
- kind: ServiceAccount
  name: {{ include "admission-host.fullname" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/*
The Secret the host keeps its CA and serving certificate in (certificates.mode self).
*/}}
{{- define "admission-host.certSecret" -}}
{{ include "admission-host.fullname" . }}-tls
{{- end }}

{{/*
The Secret cert-manager writes the serving certificate to (certificates.mode cert-manager).
*/}}
{{- define "admission-host.certManagerSecret" -}}
{{ include "admission-host.fullname" . }}-cert-manager-tls
{{- end }}

{{/*
The Secret whose ca.crt the API server's caBundle holds, in either mode.
*/}}
{{- define "admission-host.caSecret" -}}
{{- if eq .Values.certificates.mode "cert-manager" }}
{{- include "admission-host.certManagerSecret" . }}
{{- else }}
{{- include "admission-host.certSecret" . }}
{{- end }}
{{- end }}

{{/*
The leader Lease: config.leaderElection.name, else the fullname.
*/}}
{{- define "admission-host.leaseName" -}}
{{- dig "leaderElection" "name" "" .Values.config | default (include "admission-host.fullname" .) }}
{{- end }}

{{/*
The host's config file: config, with leaderElection.name filled in.
*/}}
{{- define "admission-host.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $election := get $config "leaderElection" | default dict }}
{{- $_ := set $election "name" (include "admission-host.leaseName" .) }}
{{- $_ = set $config "leaderElection" $election }}
{{- toYaml $config }}
{{- end }}

{{/*
--workers: the value, or the CPU limit rounded up (the CPU_LIMIT variable).
*/}}
{{- define "admission-host.workers" -}}
{{- if eq (toString .Values.workers) "" }}$(CPU_LIMIT){{ else }}{{ .Values.workers }}{{ end }}
{{- end }}

{{/*
The PodDisruptionBudget's apiVersion: policy/v1 where the cluster serves it (1.21 on), else
policy/v1beta1. Against a cluster, .Capabilities come from its discovery; offline (helm template)
Helm's default API versions include policy/v1 (as a group version only, not as
"policy/v1/PodDisruptionBudget") whatever --kube-version says, hence the version check too.
*/}}
{{- define "admission-host.pdbApiVersion" -}}
{{- if and (.Capabilities.APIVersions.Has "policy/v1") (semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version) }}
{{- "policy/v1" }}
{{- else }}
{{- "policy/v1beta1" }}
{{- end }}
{{- end }}
