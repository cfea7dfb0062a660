{{- /*
The PKI of the release as a JSON object {"anchors", "crt", "key"} (the trust anchors PEM, the
issuer certificate and key), computed on the first call of a render and kept in the root context
("tullePKI"), which every template of the chart shares: identity-pki.yaml and the dashboard's
injected proxy (dashboard.yaml) must see the same anchors, and a generated PKI is random.
How it is chosen: identity-pki.yaml. Call with the root context: include "tulle.pki" $ | fromJson.
*/ -}}
{{- define "tulle.pki" -}}
{{- if not (hasKey . "tullePKI") }}
{{- $id := .Values.identity }}
{{- $anchors := "" }}
{{- $crt := "" }}
{{- $key := "" }}
{{- if or $id.trustAnchorsPEM $id.issuer.crtPEM $id.issuer.keyPEM }}
{{- if not (and $id.trustAnchorsPEM $id.issuer.crtPEM $id.issuer.keyPEM) }}
{{- fail "identity.trustAnchorsPEM, identity.issuer.crtPEM and identity.issuer.keyPEM go together: set all three, or none to let the chart generate the PKI" }}
{{- end }}
{{- $anchors = $id.trustAnchorsPEM }}
{{- $crt = $id.issuer.crtPEM }}
{{- $key = $id.issuer.keyPEM }}
{{- else }}
{{- $secret := lookup "v1" "Secret" .Release.Namespace "tulle-identity-issuer" }}
{{- $cm := lookup "v1" "ConfigMap" .Release.Namespace "tulle-trust-anchors" }}
{{- if and $secret $cm (dig "data" "tls.crt" "" $secret) (dig "data" "tls.key" "" $secret) (dig "data" "trust-anchors.pem" "" $cm) }}
{{- $crt = index $secret.data "tls.crt" | b64dec }}
{{- $key = index $secret.data "tls.key" | b64dec }}
{{- $anchors = index $cm.data "trust-anchors.pem" }}
{{- else }}
{{- $cn := printf "identity.tulle.%s" $id.trustDomain }}
{{- $pk := genPrivateKey "ecdsa" }}
{{- $root := genCAWithKey $cn (mul (int $id.validityDays) 10 | int) $pk }}
{{- $issuer := genCAWithKey $cn (int $id.validityDays) $pk }}
{{- $anchors = $root.Cert }}
{{- $crt = $issuer.Cert }}
{{- $key = $issuer.Key }}
{{- end }}
{{- end }}
{{- $_ := set . "tullePKI" (dict "anchors" $anchors "crt" $crt "key" $key) }}
{{- end }}
{{- toJson (get . "tullePKI") -}}
{{- end }}
