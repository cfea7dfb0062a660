//! The proxy's contract with everything that deploys, configures or reads it: its ports, UID,
//! container names and environment variables. The proxy's config and init, the injector, the
//! CLI's manifests and checks and the controller's scraper all use these, so they cannot
//! drift apart.

/// The inbound port (all interfaces): redirected inbound connections arrive here.
pub const INBOUND_PORT: u16 = 4143;
/// The outbound port (127.0.0.1): redirected outbound connections arrive here.
pub const OUTBOUND_PORT: u16 = 4140;
/// The admin port (`/metrics`, `/ready`, `/live`, `/config`), never redirected.
pub const ADMIN_PORT: u16 = 4191;
/// The proxy's UID; its own connections are not redirected.
pub const PROXY_UID: u32 = 2110;
/// The proxy sidecar's container name.
pub const PROXY_CONTAINER: &str = "tulle-proxy";
/// The init step's container name.
pub const INIT_CONTAINER: &str = "tulle-init";
/// The trust-anchor ConfigMap: in the control-plane namespace (the source) and copied by the
/// controller into every other namespace, where the injector mounts it into the proxy.
pub const TRUST_ANCHORS_CONFIGMAP: &str = "tulle-trust-anchors";
/// Its key holding the PEM bundle.
pub const TRUST_ANCHORS_KEY: &str = "trust-anchors.pem";
/// Where the proxy container mounts it.
pub const TRUST_ANCHORS_DIR: &str = "/var/run/tulle.io/trust-anchors";
/// The label of a namespace that holds a tulle control plane (its value: that namespace). The
/// injector does not mesh such namespaces, and a controller gives them no copy of its trust
/// anchors: they keep their own.
pub const CONTROL_PLANE_NS_LABEL: &str = "tulle.io/control-plane-ns";

/// The environment variables the proxy reads.
pub mod env {
    pub const INBOUND_LISTEN_ADDR: &str = "TULLE_PROXY_INBOUND_LISTEN_ADDR";
    pub const OUTBOUND_LISTEN_ADDR: &str = "TULLE_PROXY_OUTBOUND_LISTEN_ADDR";
    pub const ADMIN_LISTEN_ADDR: &str = "TULLE_PROXY_ADMIN_LISTEN_ADDR";
    pub const IDENTITY_CERT_FILE: &str = "TULLE_PROXY_IDENTITY_CERT_FILE";
    pub const IDENTITY_KEY_FILE: &str = "TULLE_PROXY_IDENTITY_KEY_FILE";
    pub const IDENTITY_TRUST_ANCHORS_FILE: &str = "TULLE_PROXY_IDENTITY_TRUST_ANCHORS_FILE";
    pub const IDENTITY_TRUST_ANCHORS_PEM: &str = "TULLE_PROXY_IDENTITY_TRUST_ANCHORS_PEM";
    pub const IDENTITY_NAME: &str = "TULLE_PROXY_IDENTITY_NAME";
    pub const IDENTITY_SVC_ADDR: &str = "TULLE_PROXY_IDENTITY_SVC_ADDR";
    pub const IDENTITY_SVC_NAME: &str = "TULLE_PROXY_IDENTITY_SVC_NAME";
    pub const IDENTITY_TOKEN_FILE: &str = "TULLE_PROXY_IDENTITY_TOKEN_FILE";
    pub const DESTINATION_SVC_ADDR: &str = "TULLE_PROXY_DESTINATION_SVC_ADDR";
    pub const DESTINATION_SVC_NAME: &str = "TULLE_PROXY_DESTINATION_SVC_NAME";
    pub const POLICY_SVC_ADDR: &str = "TULLE_PROXY_POLICY_SVC_ADDR";
    pub const POLICY_SVC_NAME: &str = "TULLE_PROXY_POLICY_SVC_NAME";
    pub const STATIC_POLICY: &str = "TULLE_PROXY_STATIC_POLICY";
    pub const POD_NAMESPACE: &str = "TULLE_PROXY_POD_NAMESPACE";
    pub const POD_NAME: &str = "TULLE_PROXY_POD_NAME";
    pub const STATIC_CONFIG: &str = "TULLE_PROXY_STATIC_CONFIG";
    pub const OUTBOUND_ORIG_DST_FALLBACK: &str = "TULLE_PROXY_OUTBOUND_ORIG_DST_FALLBACK";
    pub const INBOUND_APP_HOST: &str = "TULLE_PROXY_INBOUND_APP_HOST";
    pub const INBOUND_PORT_FALLBACK: &str = "TULLE_PROXY_INBOUND_PORT_FALLBACK";
    pub const OPAQUE_PORTS: &str = "TULLE_PROXY_OPAQUE_PORTS";
    pub const DETECT_TIMEOUT: &str = "TULLE_PROXY_DETECT_TIMEOUT";
    pub const CONNECT_TIMEOUT: &str = "TULLE_PROXY_CONNECT_TIMEOUT";
    pub const RESPONSE_TIMEOUT: &str = "TULLE_PROXY_RESPONSE_TIMEOUT";
    pub const HEADER_READ_TIMEOUT: &str = "TULLE_PROXY_HEADER_READ_TIMEOUT";
    pub const IDLE_TIMEOUT: &str = "TULLE_PROXY_IDLE_TIMEOUT";
    pub const ROUTE_IDLE_TIMEOUT: &str = "TULLE_PROXY_ROUTE_IDLE_TIMEOUT";
    pub const MAX_IN_FLIGHT: &str = "TULLE_PROXY_MAX_IN_FLIGHT";
    pub const MAX_HEADER_BYTES: &str = "TULLE_PROXY_MAX_HEADER_BYTES";
    pub const H2_MAX_CONCURRENT_STREAMS: &str = "TULLE_PROXY_H2_MAX_CONCURRENT_STREAMS";
    pub const H2_IDLE_TIMEOUT: &str = "TULLE_PROXY_H2_IDLE_TIMEOUT";
    pub const INBOUND_MAX_CONNECTIONS: &str = "TULLE_PROXY_INBOUND_MAX_CONNECTIONS";
    pub const OUTBOUND_MAX_CONNECTIONS: &str = "TULLE_PROXY_OUTBOUND_MAX_CONNECTIONS";
    pub const ADMIN_MAX_CONNECTIONS: &str = "TULLE_PROXY_ADMIN_MAX_CONNECTIONS";
    pub const MAX_REQUEST_BODY_BYTES: &str = "TULLE_PROXY_MAX_REQUEST_BODY_BYTES";
    pub const SHUTDOWN_GRACE: &str = "TULLE_PROXY_SHUTDOWN_GRACE";
    pub const WORKER_THREADS: &str = "TULLE_PROXY_WORKER_THREADS";
    pub const LOG: &str = "TULLE_PROXY_LOG";
    pub const MESH_NETWORKS: &str = "TULLE_PROXY_MESH_NETWORKS";
}
