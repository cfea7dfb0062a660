//! Configuration files: the backend (nginx, `return 200`, one worker), the nginx pair, the
//! haproxy pair (as in notes/perf.md §4.1) and the tulle pair's static discovery file.
//! Every process is a single process with one worker, on 127.0.0.1 only.
use std::net::SocketAddr;
use std::path::Path;

use crate::certs::{CertFiles, SERVER_NAME};

/// The Host header (and static-discovery authority) every path is called with.
pub const AUTHORITY: &str = "web.bench.svc.cluster.local:80";

fn nginx_common(dir: &Path, name: &str) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/{name}.error.log warn;\npid {d}/{name}.pid;\n\
         events {{ worker_connections 4096; }}\n"
    )
}

fn nginx_http_common(dir: &Path, name: &str) -> String {
    let t = dir.join(format!("{name}-tmp"));
    let t = t.display();
    format!(
        "access_log off;\nclient_body_temp_path {t}/body;\nproxy_temp_path {t}/proxy;\nfastcgi_temp_path {t}/fastcgi;\n\
         uwsgi_temp_path {t}/uwsgi;\nscgi_temp_path {t}/scgi;\nkeepalive_requests 10000000;\nkeepalive_timeout 120s;\n"
    )
}

/// The backend: `return 200 "ok\n"`.
pub fn backend_nginx(dir: &Path, listen: SocketAddr) -> String {
    format!(
        "{}http {{\n{}server {{ listen {listen}; location / {{ return 200 \"ok\\n\"; }} }}\n}}\n",
        nginx_common(dir, "backend"),
        nginx_http_common(dir, "backend"),
    )
}

/// nginx outbound: plain HTTP/1.1 in, HTTP/1.1 over mTLS to the inbound nginx (pooled).
pub fn nginx_outbound(
    dir: &Path,
    certs: &CertFiles,
    listen: SocketAddr,
    inbound: SocketAddr,
) -> String {
    format!(
        "{common}http {{\n{http}\
upstream inbound {{ server {inbound}; keepalive 256; keepalive_requests 10000000; keepalive_timeout 120s; }}\n\
server {{\n  listen {listen};\n  location / {{\n    proxy_pass https://inbound;\n    proxy_http_version 1.1;\n\
    proxy_set_header Connection \"\";\n    proxy_set_header Host $http_host;\n\
    proxy_ssl_certificate {cc};\n    proxy_ssl_certificate_key {ck};\n    proxy_ssl_trusted_certificate {ca};\n\
    proxy_ssl_verify on;\n    proxy_ssl_name {SERVER_NAME};\n    proxy_ssl_server_name on;\n    proxy_ssl_protocols TLSv1.3;\n\
    proxy_ssl_session_reuse on;\n  }}\n}}\n}}\n",
        common = nginx_common(dir, "nginx-out"),
        http = nginx_http_common(dir, "nginx-out"),
        cc = certs.client_cert.display(),
        ck = certs.client_key.display(),
        ca = certs.ca.display(),
    )
}

/// nginx inbound: terminates mTLS (client certificate required), HTTP/1.1 to the backend.
pub fn nginx_inbound(
    dir: &Path,
    certs: &CertFiles,
    listen: SocketAddr,
    backend: SocketAddr,
) -> String {
    format!(
        "{common}http {{\n{http}\
upstream backend {{ server {backend}; keepalive 256; keepalive_requests 10000000; keepalive_timeout 120s; }}\n\
server {{\n  listen {listen} ssl;\n  ssl_certificate {sc};\n  ssl_certificate_key {sk};\n\
  ssl_client_certificate {ca};\n  ssl_verify_client on;\n  ssl_protocols TLSv1.3;\n\
  location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n}}\n}}\n",
        common = nginx_common(dir, "nginx-in"),
        http = nginx_http_common(dir, "nginx-in"),
        sc = certs.server_cert.display(),
        sk = certs.server_key.display(),
        ca = certs.ca.display(),
    )
}

const HAPROXY_GLOBAL: &str = "global\n  nbthread 1\n  maxconn 4000\n\
defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  timeout http-keep-alive 60s\n";

/// haproxy outbound: HTTP/1.1 in, HTTP/2 over mTLS to the inbound haproxy (`http-reuse always`).
pub fn haproxy_outbound(certs: &CertFiles, listen: SocketAddr, inbound: SocketAddr) -> String {
    format!(
        "{HAPROXY_GLOBAL}frontend out\n  bind {listen}\n  default_backend mesh\n\
backend mesh\n  http-reuse always\n  server in1 {inbound} ssl verify required ca-file {ca} crt {crt} \
sni str({SERVER_NAME}) verifyhost {SERVER_NAME} alpn h2\n",
        ca = certs.ca.display(),
        crt = certs.client_combined.display(),
    )
}

/// haproxy inbound: terminates mTLS (h2 or http/1.1), HTTP/1.1 to the backend.
pub fn haproxy_inbound(certs: &CertFiles, listen: SocketAddr, backend: SocketAddr) -> String {
    format!(
        "{HAPROXY_GLOBAL}frontend in\n  bind {listen} ssl crt {crt} ca-file {ca} verify required alpn h2,http/1.1\n\
  default_backend app\nbackend app\n  http-reuse always\n  server app {backend}\n",
        ca = certs.ca.display(),
        crt = certs.server_combined.display(),
    )
}

/// The tulle inbound proxy's static policy of the `tulle-authz` path (the shape of
/// `tulle_proxy::policy::PolicyFile`): the pod is targeted by one TrafficTarget listing four
/// other identities and then `client`, on `port`, with 20 HTTP route rules of which only the
/// last (`GET /`) matches the bench requests: the worst case of an allowed request.
pub fn tulle_authz_policy(client: &str, port: u16) -> String {
    let mut identities: Vec<String> = (1..=4)
        .map(|i| format!("other-{i}.bench.serviceaccount.identity.tulle.cluster.local"))
        .collect();
    identities.push(client.to_string());
    let mut routes: Vec<serde_json::Value> = (1..20)
        .map(|i| {
            serde_json::json!({
                "name": format!("bench-routes/rule-{i}"),
                "path_regex": format!("/api/v{i}/(users|orders)/[0-9]+"),
                "methods": ["GET", "POST"],
                "headers": if i % 5 == 0 {
                    serde_json::json!([{"name": "x-tenant", "value_regex": "bench-[a-z]+"}])
                } else {
                    serde_json::json!([])
                },
            })
        })
        .collect();
    routes.push(
        serde_json::json!({"name": "bench-routes/root", "path_regex": "/", "methods": ["GET"]}),
    );
    serde_json::json!({
        "default_policy": "deny",
        "targeted": true,
        "authorizations": [{
            "traffic_target": "bench/web",
            "identities": identities,
            "ports": [port],
            "http_routes": routes,
        }],
    })
    .to_string()
}

/// The tulle outbound proxy's static discovery: the bench authority resolves to the inbound
/// proxy, which must present [`SERVER_NAME`]. With `split`, a 50/50 TrafficSplit of the bench
/// authority between two backend services, each resolving to the same inbound proxy.
pub fn tulle_static(service_addr: SocketAddr, inbound: SocketAddr, split: bool) -> String {
    let endpoints = serde_json::json!([{
        "addr": inbound.to_string(),
        "identity": SERVER_NAME,
        "labels": {"pod": "web-bench-1"}
    }]);
    let mut destinations = vec![serde_json::json!({
        "authority": AUTHORITY,
        "addrs": [service_addr.to_string()],
        "endpoints": endpoints,
    })];
    let mut splits = vec![];
    if split {
        let backends: Vec<String> = ["web-v1", "web-v2"]
            .iter()
            .map(|b| format!("{b}.bench.svc.cluster.local:80"))
            .collect();
        for b in &backends {
            destinations.push(serde_json::json!({"authority": b, "endpoints": endpoints}));
        }
        splits.push(serde_json::json!({
            "authority": AUTHORITY,
            "addrs": [service_addr.to_string()],
            "name": "bench/web",
            "backends": [{"authority": backends[0], "weight": 50}, {"authority": backends[1], "weight": 50}],
        }));
    }
    serde_json::json!({"destinations": destinations, "splits": splits}).to_string()
}
