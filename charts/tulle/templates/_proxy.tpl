{{- /*
The proxy injected statically into a control-plane pod (the injector webhook skips the control
plane): what `tulle install` gets from tulle_inject::inject_pod (crate tulle-inject, the code of
the webhook and of `tulle inject --manual`; inject/src/sidecar.rs and patch.rs), written out as
templates, since Helm cannot run it. cli/tests/helm.rs checks that both render the same.
Each helper takes (dict "ctx" $ "sa" "<ServiceAccount>" "workload" "<Deployment>"
"skipOutboundPorts" "<ports>" "anchors" "<trust anchors PEM>"), but tulle.proxy.enabled: $.
*/ -}}

{{/* Whether the proxy can be injected: the injector refuses every pod when the pod network has
IPv6 (the proxy intercepts only IPv4; docs/ipv6.md). */}}
{{- define "tulle.proxy.enabled" -}}
{{- if not (has "IPv6" .Values.ipFamilies) }}true{{ end -}}
{{- end }}

{{/* Annotations of the injected pod template. */}}
{{- define "tulle.proxy.annotations" -}}
config.tulle.io/skip-outbound-ports: {{ .skipOutboundPorts | quote }}
tulle.io/inject: enabled
tulle.io/injected: "true"
tulle.io/proxy-version: {{ include "tulle.tag" .ctx | quote }}
{{- end }}

{{/* Labels of the injected pod template. */}}
{{- define "tulle.proxy.labels" -}}
tulle.io/proxied: "true"
tulle.io/proxy-deployment: {{ .workload }}
{{- end }}

{{/* The init step and the proxy (a native sidecar), in this order, before the pod's own. */}}
{{- define "tulle.proxy.initContainers" -}}
{{- $image := include "tulle.image" (dict "ctx" .ctx "component" "proxy") }}
- name: tulle-init
  image: {{ $image }}
  imagePullPolicy: IfNotPresent
  args: [init, --skip-outbound-ports, {{ .skipOutboundPorts | quote }}]
  resources:
    requests: {cpu: 10m, memory: 16Mi}
    limits: {memory: 64Mi}
  securityContext:
    runAsUser: 0
    runAsNonRoot: false
    privileged: false
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: [ALL]
      add: [NET_ADMIN, NET_RAW]
    seccompProfile:
      type: RuntimeDefault
  volumeMounts:
  - {name: tulle-init-xtables-lock, mountPath: /run}
  terminationMessagePolicy: FallbackToLogsOnError
- name: tulle-proxy
  image: {{ $image }}
  imagePullPolicy: IfNotPresent
  restartPolicy: Always
  env:
  - {name: TULLE_PROXY_LOG, value: {{ .ctx.Values.proxy.logLevel | quote }}}
  - name: TULLE_PROXY_IDENTITY_NAME
    value: {{ printf "%s.%s.serviceaccount.identity.tulle.%s" .sa .ctx.Release.Namespace .ctx.Values.identity.trustDomain | quote }}
  - {name: TULLE_PROXY_IDENTITY_SVC_ADDR, value: "tulle-identity.tulle-system.svc.cluster.local:8080"}
  - name: TULLE_PROXY_IDENTITY_SVC_NAME
    value: {{ include "tulle.identityName" (dict "ctx" .ctx "sa" "tulle-identity") | quote }}
  - {name: TULLE_PROXY_IDENTITY_TOKEN_FILE, value: /var/run/secrets/tulle.io/serviceaccount/token}
  - name: TULLE_PROXY_IDENTITY_TRUST_ANCHORS_PEM
    value: {{ .anchors | quote }}
  - {name: TULLE_PROXY_IDENTITY_TRUST_ANCHORS_FILE, value: /var/run/tulle.io/trust-anchors/trust-anchors.pem}
  - {name: TULLE_PROXY_DESTINATION_SVC_ADDR, value: "tulle-controller.tulle-system.svc.cluster.local:8086"}
  - name: TULLE_PROXY_DESTINATION_SVC_NAME
    value: {{ include "tulle.identityName" (dict "ctx" .ctx "sa" "tulle-controller") | quote }}
  - {name: TULLE_PROXY_POLICY_SVC_ADDR, value: "tulle-controller.tulle-system.svc.cluster.local:8090"}
  - name: TULLE_PROXY_POLICY_SVC_NAME
    value: {{ include "tulle.identityName" (dict "ctx" .ctx "sa" "tulle-controller") | quote }}
  - name: TULLE_PROXY_POD_NAMESPACE
    valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
  - name: TULLE_PROXY_POD_NAME
    valueFrom: {fieldRef: {fieldPath: metadata.name}}
  ports:
  - {name: tulle-proxy, containerPort: 4143, protocol: TCP}
  - {name: tulle-admin, containerPort: 4191, protocol: TCP}
  startupProbe:
    httpGet: {path: /ready, port: 4191}
    periodSeconds: 1
    failureThreshold: 120
    timeoutSeconds: 1
  readinessProbe:
    httpGet: {path: /ready, port: 4191}
    periodSeconds: 10
    failureThreshold: 3
    timeoutSeconds: 1
  livenessProbe:
    httpGet: {path: /live, port: 4191}
    periodSeconds: 10
    failureThreshold: 6
    timeoutSeconds: 1
  resources:
    requests: {cpu: 10m, memory: 32Mi}
    limits: {memory: 256Mi}
  securityContext:
    runAsUser: 2110
    runAsGroup: 2110
    runAsNonRoot: true
    privileged: false
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: [ALL]
    seccompProfile:
      type: RuntimeDefault
  volumeMounts:
  - {name: tulle-identity-token, mountPath: /var/run/secrets/tulle.io/serviceaccount, readOnly: true}
  - {name: tulle-trust-anchors, mountPath: /var/run/tulle.io/trust-anchors, readOnly: true}
  terminationMessagePolicy: FallbackToLogsOnError
{{- end }}

{{/* The volumes the proxy adds: its projected ServiceAccount token (audience
identity.tulle.io), presented to tulle-identity, the init step's writable /run, and the trust
anchors ConfigMap (reloaded by the proxy when rotated). */}}
{{- define "tulle.proxy.volumes" -}}
- name: tulle-identity-token
  projected:
    sources:
    - serviceAccountToken: {audience: identity.tulle.io, expirationSeconds: 86400, path: token}
- {name: tulle-init-xtables-lock, emptyDir: {}}
- name: tulle-trust-anchors
  configMap: {name: tulle-trust-anchors, optional: true}
{{- end }}
