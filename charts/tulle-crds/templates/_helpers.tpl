{{/*
Labels of every object: the tulle contract labels plus Helm's.
Call with (dict "ctx" $ "component" "crds").
*/}}
{{- define "tulle-crds.labels" -}}
app.kubernetes.io/part-of: tulle
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}
