{{/* The image tag: .Values.image.tag, else the chart's appVersion. */}}
{{- define "tulle.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end }}

{{/* `<registry>/<component>:<tag>`. Call with (dict "ctx" $ "component" "identity"). */}}
{{- define "tulle.image" -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .ctx.Values.image.registry) .component (include "tulle.tag" .ctx) -}}
{{- end }}

{{/*
Labels of every object: the tulle contract labels (part-of, name = component, version) plus
Helm's. Call with (dict "ctx" $ "component" "controller").
*/}}
{{- define "tulle.labels" -}}
app.kubernetes.io/part-of: tulle
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/version: {{ include "tulle.tag" .ctx | quote }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of a control-plane component (stable across upgrades). */}}
{{- define "tulle.selectorLabels" -}}
tulle.io/control-plane-component: {{ .component }}
{{- end }}

{{/* The identity name of a ServiceAccount in tulle-system. */}}
{{- define "tulle.identityName" -}}
{{- printf "%s.tulle-system.serviceaccount.identity.tulle.%s" .sa .ctx.Values.identity.trustDomain -}}
{{- end }}

{{/* The strict security context of every control-plane container. */}}
{{- define "tulle.containerSecurityContext" -}}
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Pod-level parts shared by both Deployments. */}}
{{- define "tulle.podCommon" -}}
automountServiceAccountToken: true
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
- name: {{ . }}
{{- end }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* With ha.enabled: the replicas of a component preferably on different nodes (preferred, so a
single-node cluster still schedules them all). */}}
{{- define "tulle.haAffinity" -}}
{{- if .ctx.Values.ha.enabled }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        labelSelector:
          matchLabels:
            {{- include "tulle.selectorLabels" (dict "component" .component) | nindent 12 }}
        topologyKey: kubernetes.io/hostname
{{- end }}
{{- end }}

{{/* Readiness and liveness probes on the admin port. */}}
{{- define "tulle.probes" -}}
readinessProbe:
  httpGet: {path: /ready, port: 9990}
  periodSeconds: 5
  failureThreshold: 3
  timeoutSeconds: 2
livenessProbe:
  httpGet: {path: /live, port: 9990}
  periodSeconds: 10
  failureThreshold: 6
  timeoutSeconds: 2
{{- end }}
