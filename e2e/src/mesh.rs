//! The tulle control plane and hand-written proxy sidecars for tests that run them in a test
//! namespace (before `tulle install` and injection exist): a test PKI, the identity and
//! controller Deployments with their RBAC, and the init step + native-sidecar proxy to add to
//! a workload. Images come from `cluster/load-tulle` ([`tulle_image`]).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// `localhost/tulle/<component>:<version>`, as imported by `cluster/load-tulle`.
pub fn tulle_image(component: &str) -> String {
    format!("localhost/tulle/{component}:{}", env!("CARGO_PKG_VERSION"))
}

/// A trust anchor and an issuer signed by it.
#[derive(Debug)]
pub struct TestCa {
    pub root_der: Vec<u8>,
    pub root_pem: String,
    pub issuer_pem: String,
    pub issuer_key_pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let p256 = &rcgen::PKCS_ECDSA_P256_SHA256;
        let root_key = KeyPair::generate_for(p256).expect("P-256 key");
        let mut rp = CertificateParams::new(Vec::<String>::new()).expect("params");
        rp.distinguished_name.push(DnType::CommonName, "root.e2e");
        rp.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        rp.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root = rp.self_signed(&root_key).expect("root");
        let root_issuer = rcgen::Issuer::new(rp, root_key);
        let key = KeyPair::generate_for(p256).expect("P-256 key");
        let mut ip = CertificateParams::new(Vec::<String>::new()).expect("params");
        ip.distinguished_name
            .push(DnType::CommonName, "identity.e2e");
        ip.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ip.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = ip.signed_by(&key, &root_issuer).expect("issuer");
        TestCa {
            root_der: root.der().to_vec(),
            root_pem: root.pem(),
            issuer_pem: cert.pem(),
            issuer_key_pem: key.serialize_pem(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// Indents every line of `s` by `n` spaces (for PEM blocks in YAML literals).
pub fn indent(s: &str, n: usize) -> String {
    s.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(n)))
        .collect()
}

/// The identity name of ServiceAccount `sa` in `ns` (trust domain cluster.local).
pub fn identity_name(sa: &str, ns: &str) -> String {
    format!("{sa}.{ns}.serviceaccount.identity.tulle.cluster.local")
}

/// tulle-identity and tulle-controller (injector off) in namespace `ns`, with their Services, ServiceAccounts,
/// the issuer Secret, the trust-anchors ConfigMap and cluster RBAC named `<ns>-identity` and
/// `<ns>-controller` (remove those with [`ClusterRbac`]). The namespace is labelled as a control
/// plane's, first, so that an installed mesh (running beside these tests) neither injects its
/// pods nor overwrites its trust anchors with its own.
pub fn control_plane(ns: &str, ca: &TestCa) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
  labels: {{tulle.io/control-plane-ns: {ns}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: tulle-identity-issuer}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{crt}  tls.key: |
{key}---
apiVersion: v1
kind: ConfigMap
metadata: {{name: tulle-trust-anchors}}
data:
  trust-anchors.pem: |
{roots}---
apiVersion: v1
kind: Service
metadata: {{name: tulle-identity}}
spec:
  selector: {{app: tulle-identity}}
  ports: [{{name: grpc, port: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: tulle-controller}}
spec:
  selector: {{app: tulle-controller}}
  ports: [{{name: grpc, port: 8086}}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: tulle-identity}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: tulle-controller}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {ns}-identity}}
rules:
- {{apiGroups: [authentication.k8s.io], resources: [tokenreviews], verbs: [create]}}
- {{apiGroups: [events.k8s.io], resources: [events], verbs: [create, patch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {ns}-identity}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ns}-identity}}
subjects: [{{kind: ServiceAccount, name: tulle-identity, namespace: {ns}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {ns}-controller}}
rules:
- {{apiGroups: [""], resources: [services, pods], verbs: [list, watch]}}
- {{apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}}
- {{apiGroups: [split.smi-spec.io], resources: [trafficsplits], verbs: [list, watch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {ns}-controller}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ns}-controller}}
subjects: [{{kind: ServiceAccount, name: tulle-controller, namespace: {ns}}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: tulle-identity}}
spec:
  selector: {{matchLabels: {{app: tulle-identity}}}}
  template:
    metadata: {{labels: {{app: tulle-identity}}}}
    spec:
      serviceAccountName: tulle-identity
      containers:
      - name: identity
        image: {identity_image}
        imagePullPolicy: Never
        env:
        - {{name: TULLE_IDENTITY_NAMESPACE, value: {ns}}}
        - {{name: TULLE_IDENTITY_ISSUER_DIR, value: /var/run/tulle/issuer}}
        - {{name: TULLE_IDENTITY_POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        volumeMounts: [{{name: issuer, mountPath: /var/run/tulle/issuer, readOnly: true}}]
        readinessProbe: {{httpGet: {{path: /ready, port: 9990}}, periodSeconds: 1}}
        securityContext: {restricted}
      volumes: [{{name: issuer, secret: {{secretName: tulle-identity-issuer}}}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: tulle-controller}}
spec:
  selector: {{matchLabels: {{app: tulle-controller}}}}
  template:
    metadata: {{labels: {{app: tulle-controller}}}}
    spec:
      serviceAccountName: tulle-controller
      containers:
      - name: controller
        image: {controller_image}
        imagePullPolicy: Never
        env:
        - {{name: TULLE_CONTROLLER_NAMESPACE, value: {ns}}}
        - {{name: TULLE_CONTROLLER_IDENTITY_ADDR, value: "tulle-identity.{ns}.svc.cluster.local:8080"}}
        - {{name: TULLE_CONTROLLER_IDENTITY_SERVER_NAME, value: "{identity_id}"}}
        - {{name: TULLE_CONTROLLER_TRUST_ANCHORS, value: /var/run/tulle/identity/trust-anchors.pem}}
        - {{name: TULLE_CONTROLLER_TOKEN_FILE, value: /var/run/secrets/tulle.io/serviceaccount/token}}
        - {{name: TULLE_CONTROLLER_INJECT_DISABLED, value: "true"}}
        volumeMounts:
        - {{name: anchors, mountPath: /var/run/tulle/identity, readOnly: true}}
        - {{name: token, mountPath: /var/run/secrets/tulle.io/serviceaccount, readOnly: true}}
        readinessProbe: {{httpGet: {{path: /ready, port: 9990}}, periodSeconds: 1}}
        securityContext: {restricted}
      volumes:
      - {{name: anchors, configMap: {{name: tulle-trust-anchors}}}}
      - name: token
        projected:
          sources: [{{serviceAccountToken: {{path: token, audience: identity.tulle.io, expirationSeconds: 86400}}}}]
"#,
        crt = indent(&ca.issuer_pem, 4),
        key = indent(&ca.issuer_key_pem, 4),
        roots = indent(&ca.root_pem, 4),
        identity_image = tulle_image("identity"),
        controller_image = tulle_image("controller"),
        identity_id = identity_name("tulle-identity", ns),
        restricted = RESTRICTED,
    )
}

const RESTRICTED: &str = "{runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}";

/// The pod-spec entries that mesh a workload by hand, as the injector will: `initContainers`
/// (the iptables step, then the proxy as a native sidecar) and `volumes` (the projected
/// identity token), for a pod of ServiceAccount `sa` in `ns`, whose control plane runs in
/// `cp_ns`. Indented for a pod template's `spec:` (6 spaces).
pub fn sidecar(sa: &str, ns: &str, cp_ns: &str, ca: &TestCa) -> String {
    format!(
        r#"      initContainers:
      - name: tulle-init
        image: {proxy}
        imagePullPolicy: Never
        args: [init]
        securityContext:
          runAsUser: 0
          runAsNonRoot: false
          readOnlyRootFilesystem: true
          allowPrivilegeEscalation: false
          capabilities: {{drop: [ALL], add: [NET_ADMIN, NET_RAW]}}
      - name: tulle-proxy
        image: {proxy}
        imagePullPolicy: Never
        restartPolicy: Always
        ports: [{{name: tulle-proxy, containerPort: 4143}}, {{name: tulle-admin, containerPort: 4191}}]
        env:
        - {{name: TULLE_PROXY_IDENTITY_NAME, value: "{id}"}}
        - {{name: TULLE_PROXY_IDENTITY_SVC_ADDR, value: "tulle-identity.{cp_ns}.svc.cluster.local:8080"}}
        - {{name: TULLE_PROXY_IDENTITY_SVC_NAME, value: "{identity_id}"}}
        - {{name: TULLE_PROXY_IDENTITY_TOKEN_FILE, value: /var/run/secrets/tulle.io/serviceaccount/token}}
        - name: TULLE_PROXY_IDENTITY_TRUST_ANCHORS_PEM
          value: |
{anchors}        - {{name: TULLE_PROXY_DESTINATION_SVC_ADDR, value: "tulle-controller.{cp_ns}.svc.cluster.local:8086"}}
        - {{name: TULLE_PROXY_DESTINATION_SVC_NAME, value: "{controller_id}"}}
        - {{name: TULLE_PROXY_POD_NAMESPACE, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
        - {{name: TULLE_PROXY_POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: TULLE_PROXY_SHUTDOWN_GRACE, value: 5s}}
        volumeMounts: [{{name: tulle-identity-token, mountPath: /var/run/secrets/tulle.io/serviceaccount, readOnly: true}}]
        startupProbe: {{httpGet: {{path: /ready, port: 4191}}, periodSeconds: 1, failureThreshold: 120}}
        readinessProbe: {{httpGet: {{path: /ready, port: 4191}}, periodSeconds: 2}}
        securityContext:
          runAsUser: 2110
          runAsNonRoot: true
          readOnlyRootFilesystem: true
          allowPrivilegeEscalation: false
          capabilities: {{drop: [ALL]}}
      volumes:
      - name: tulle-identity-token
        projected:
          sources: [{{serviceAccountToken: {{path: token, audience: identity.tulle.io, expirationSeconds: 86400}}}}]
"#,
        proxy = tulle_image("proxy"),
        id = identity_name(sa, ns),
        identity_id = identity_name("tulle-identity", cp_ns),
        controller_id = identity_name("tulle-controller", cp_ns),
        anchors = indent(&ca.root_pem, 12),
    )
}

/// Deletes the cluster-scoped RBAC of [`control_plane`] when dropped.
#[derive(Debug)]
pub struct ClusterRbac(pub String);

impl Drop for ClusterRbac {
    fn drop(&mut self) {
        if std::env::var_os("TULLE_E2E_KEEP").is_some() {
            return;
        }
        for kind in ["clusterrole", "clusterrolebinding"] {
            for suffix in ["identity", "controller"] {
                let _ = crate::kubectl::run(&[
                    "delete",
                    kind,
                    &format!("{}-{suffix}", self.0),
                    "--ignore-not-found",
                ]);
            }
        }
    }
}
