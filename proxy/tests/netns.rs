//! Transparent interception in real network namespaces: two "pods" joined by a veth pair,
//! each with `tulle-proxy init` iptables rules and a `tulle-proxy` running as UID 2110.
//! An unmodified client in pod A connects to pod B's IP; iptables sends it through A's
//! outbound proxy, mesh mTLS, B's inbound proxy, to B's application.
//!
//! Needs root, `ip netns`, iptables and setpriv. Run alone with
//! `cargo test -p tulle-proxy --test netns`. It fails (never skips) when those are missing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tulle-proxy");
const ID_A: &str = "client.a.serviceaccount.identity.tulle.cluster.local";
const ID_B: &str = "web.b.serviceaccount.identity.tulle.cluster.local";
const APP_PORT: u16 = 8080;

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn must(args: &[&str]) -> String {
    sh(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Two namespaces joined by a veth pair; removed (with their processes) on drop.
struct Net {
    a: String,
    b: String,
    ip_a: String,
    ip_b: String,
    ip6_a: String,
    ip6_b: String,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = sh(&["ip", "netns", "del", &self.a]);
        let _ = sh(&["ip", "netns", "del", &self.b]);
    }
}

static N: AtomicU32 = AtomicU32::new(0);

impl Net {
    fn new() -> Net {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the netns test needs root (network namespaces and iptables); run it as root"
        );
        sh(&["ip", "netns", "list"])
            .unwrap_or_else(|e| panic!("`ip netns` is unavailable ({e}); install iproute2"));
        for tool in ["iptables", "setpriv"] {
            sh(&["sh", "-c", &format!("command -v {tool}")]).unwrap_or_else(|_| {
                panic!("{tool} is missing; apt-get install -y iptables util-linux")
            });
        }
        let id = std::process::id() % 100_000 * 10 + N.fetch_add(1, Ordering::Relaxed) % 10;
        let subnet = (id % 250) + 1;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let mut net = Net {
            a: format!("tulle-a-{id}"),
            b: format!("tulle-b-{id}"),
            ip_a: format!("10.251.{subnet}.1"),
            ip_b: format!("10.251.{subnet}.2"),
            ip6_a: format!("fd00:251:{subnet}::1"),
            ip6_b: format!("fd00:251:{subnet}::2"),
            children: vec![],
            _dir: dir,
            dir: path,
        };
        let (va, vb) = (format!("tva{id}"), format!("tvb{id}"));
        must(&["ip", "netns", "add", &net.a]);
        must(&["ip", "netns", "add", &net.b]);
        must(&[
            "ip", "link", "add", &va, "netns", &net.a, "type", "veth", "peer", "name", &vb,
            "netns", &net.b,
        ]);
        let sides = [
            (&net.a, &va, &net.ip_a, &net.ip6_a),
            (&net.b, &vb, &net.ip_b, &net.ip6_b),
        ];
        for (ns, dev, ip, ip6) in sides {
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            must(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                dev,
            ]);
            let ip6 = format!("{ip6}/64");
            must(&["ip", "-n", ns, "addr", "add", &ip6, "dev", dev, "nodad"]);
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        // Certificates readable by the proxy's UID.
        must(&[BIN, "dev-certs", net.dir.to_str().unwrap(), ID_A, ID_B]);
        must(&["chmod", "-R", "a+rX", net.dir.to_str().unwrap()]);
        let _ = &mut net.children;
        net
    }

    fn init(&self, ns: &str) -> String {
        must(&["ip", "netns", "exec", ns, BIN, "init"])
    }

    fn proxy(&mut self, ns: &str, id: &str, static_json: &str) {
        let static_path = self.dir.join(format!("{ns}.json"));
        std::fs::write(&static_path, static_json).unwrap();
        std::fs::set_permissions(
            &static_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.join(format!("{ns}.log"))).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "setpriv",
                "--reuid=2110",
                "--regid=2110",
                "--clear-groups",
                "--",
                BIN,
            ])
            .env_clear()
            .env(
                "TULLE_PROXY_IDENTITY_CERT_FILE",
                self.dir.join(format!("{id}.crt")),
            )
            .env(
                "TULLE_PROXY_IDENTITY_KEY_FILE",
                self.dir.join(format!("{id}.key")),
            )
            .env(
                "TULLE_PROXY_IDENTITY_TRUST_ANCHORS_FILE",
                self.dir.join("ca.pem"),
            )
            .env("TULLE_PROXY_IDENTITY_NAME", id)
            .env("TULLE_PROXY_STATIC_CONFIG", &static_path)
            .env("TULLE_PROXY_LOG", "tulle_proxy=debug,info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push(child);
        // Ready: the admin port answers 200 on /ready inside the namespace.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if in_ns(ns, || http_get("127.0.0.1:4191", "/ready", "x"))
                .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "proxy in {ns} not ready; log:\n{}",
                self.log(ns)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self, ns: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{ns}.log"))).unwrap_or_default()
    }
}

/// Runs `f` on a thread that has entered the network namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

fn http_get(addr: &str, path: &str, host: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// A tiny HTTP application in `ns` on 0.0.0.0:APP_PORT that echoes the mesh client id.
fn app(ns: &str) {
    app_on(ns, "0.0.0.0", APP_PORT);
}

/// The HTTP application of [`app`] listening on `ip:port` (`127.0.0.1`: localhost only).
fn app_on(ns: &str, ip: &'static str, port: u16) {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let l = TcpListener::bind((ip, port)).unwrap();
        tx.send(()).unwrap();
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let req = String::from_utf8_lossy(&buf).to_ascii_lowercase();
            let id = req
                .lines()
                .find_map(|l| l.strip_prefix("tulle-client-id: "))
                .unwrap_or("-")
                .trim()
                .to_string();
            let body = format!("hello from b; client-id={id}");
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("app did not start");
}

#[test]
fn transparent_interception_between_two_meshed_netns() {
    let mut net = Net::new();
    let rules = net.init(&net.a.clone());
    assert!(
        rules.contains("TULLE_PROXY_OUTPUT") && rules.contains("--to-ports 4140"),
        "{rules}"
    );
    // Idempotent: a second run yields the same rules, not duplicates.
    assert_eq!(net.init(&net.a.clone()), rules);
    net.init(&net.b.clone());
    app(&net.b.clone());

    let target = format!("{}:{APP_PORT}", net.ip_b);
    let a_static = format!(
        r#"{{"destinations":[{{"authority":"web.b.svc.cluster.local:{APP_PORT}","addrs":["{target}"],"endpoints":[{{"addr":"{target}","identity":"{ID_B}","labels":{{"pod":"web-b"}}}}]}}]}}"#
    );
    let (a, b) = (net.a.clone(), net.b.clone());
    net.proxy(&a, ID_A, &a_static);
    net.proxy(&b, ID_B, r#"{"destinations":[]}"#);

    // The client knows nothing of the mesh: it connects to B's IP and port.
    let t = target.clone();
    let resp = in_ns(&a, move || {
        http_get(&t, "/", "web.b.svc.cluster.local:8080")
    })
    .unwrap_or_else(|e| {
        panic!(
            "request failed: {e}\nA:\n{}\nB:\n{}",
            net.log(&a),
            net.log(&b)
        )
    });
    assert!(
        resp.starts_with("HTTP/1.1 200"),
        "{resp}\nA:\n{}\nB:\n{}",
        net.log(&a),
        net.log(&b)
    );
    assert!(
        resp.ends_with(&format!("client-id={ID_A}")),
        "the request crossed mesh mTLS: {resp}"
    );

    // Both proxies counted it: A outbound with B's identity, B inbound with A's identity.
    let ma = in_ns(&a, || http_get("127.0.0.1:4191", "/metrics", "x")).unwrap();
    assert!(
        ma.lines()
            .any(|l| l.starts_with("request_total{direction=\"outbound\"")
                && l.contains(&format!("server_id=\"{ID_B}\""))
                && l.contains("dst_pod=\"web-b\"")
                && l.ends_with(" 1")),
        "{ma}"
    );
    let mb = in_ns(&b, || http_get("127.0.0.1:4191", "/metrics", "x")).unwrap();
    assert!(
        mb.lines()
            .any(|l| l.starts_with("request_total{direction=\"inbound\"")
                && l.contains(&format!("client_id=\"{ID_A}\""))
                && l.contains(&format!("target_addr=\"{}:{APP_PORT}\"", net.ip_b))
                && l.ends_with(" 1")),
        "{mb}"
    );

    // An unmeshed destination (not in discovery) is forwarded to its original address.
    in_ns(&b, || {
        let l = TcpListener::bind(("0.0.0.0", 9090)).unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let _ = s.write_all(b"server-first banner\n");
            }
        });
    });
    let ipb = net.ip_b.clone();
    let banner = in_ns(&a, move || {
        let mut s = TcpStream::connect_timeout(
            &format!("{ipb}:9090").parse().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    });
    assert_eq!(
        banner,
        "server-first banner\n",
        "server-speaks-first traffic is not stalled\nA:\n{}",
        net.log(&a)
    );
    let ma = in_ns(&a, || http_get("127.0.0.1:4191", "/metrics", "x")).unwrap();
    assert!(
        ma.contains(&format!("target_addr=\"{}:9090\"", net.ip_b)),
        "the connection went through A's proxy:\n{ma}"
    );
}

/// An opaque TCP application in `ns` on `ip:port`: answers each line with `echo <line>`.
fn echo_on(ns: &str, ip: &'static str, port: u16) {
    in_ns(ns, move || {
        let l = TcpListener::bind((ip, port)).unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 256];
                    if let Ok(n @ 1..) = s.read(&mut buf) {
                        let _ = s.write_all(b"echo ");
                        let _ = s.write_all(&buf[..n]);
                    }
                });
            }
        });
    });
}

/// Plain TCP: sends `ping\n` to `addr` and returns all the bytes that come back before the
/// connection ends (nothing when the proxy closes or resets it).
fn tcp_ping(addr: &str) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))
    else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"ping\n");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A meshed peer that dials pod B's inbound port directly with identity A and chooses the
/// target port itself: the transport header (ALPN `tulle.tcp`) and `tulle-orig-port`
/// (ALPN `tulle.h2`), as a compromised or malicious meshed workload could.
struct Peer {
    tls: tulle_proxy::tls::Tls,
    inbound: std::net::SocketAddr,
}

impl Peer {
    fn new(net: &Net) -> Peer {
        use tulle_proxy::tls::CredentialSource;
        let creds = tulle_proxy::tls::FileSource {
            name: ID_A.into(),
            cert_file: net.dir.join(format!("{ID_A}.crt")),
            key_file: net.dir.join(format!("{ID_A}.key")),
            trust_anchors: tulle_proxy::config::TrustAnchors::File(net.dir.join("ca.pem")),
        }
        .load()
        .unwrap();
        Peer {
            tls: tulle_proxy::tls::Tls::new(creds).unwrap(),
            inbound: format!("{}:4143", net.ip_b).parse().unwrap(),
        }
    }

    fn mesh(&self, alpn: &[u8]) -> tulle_proxy::client::MeshTls {
        tulle_proxy::client::MeshTls {
            config: self.tls.client(alpn),
            name: tulle_proxy::tls::server_name(ID_B).unwrap(),
            identity: ID_B.into(),
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Opaque TCP over mesh mTLS to `port`: what comes back for `ping\n`.
    fn tcp(&self, port: u16) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mesh, addr) = (self.mesh(tulle_proxy::tls::ALPN_TCP), self.inbound);
        Self::rt().block_on(async move {
            let t = Duration::from_secs(5);
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut io = mesh
                .handshake_with_header(addr, tcp, t, port)
                .await
                .unwrap();
            let _ = io.write_all(b"ping\n").await;
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), io.read_to_end(&mut out)).await;
            String::from_utf8_lossy(&out).into_owned()
        })
    }

    /// An HTTP/1.1 request carried as HTTP/2 over mesh mTLS (as the outbound proxy does),
    /// with `tulle-orig-port: port`: the status and body.
    fn http(&self, port: u16) -> (u16, String) {
        let (mesh, addr) = (self.mesh(tulle_proxy::tls::ALPN_H2), self.inbound);
        Self::rt().block_on(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let io = mesh
                .handshake(addr, tcp, Duration::from_secs(5))
                .await
                .unwrap();
            let (mut client, conn) = h2::client::handshake(io).await.unwrap();
            tokio::spawn(conn);
            let req = http::Request::get(format!("http://web.b.svc.cluster.local:{port}/"))
                .header(tulle_proxy::http_headers::ORIG_PORT, port.to_string())
                // The client's HTTP/1.1, carried as HTTP/2 between proxies.
                .header(tulle_proxy::http_headers::ORIG_PROTO, "HTTP/1.1")
                .body(())
                .unwrap();
            let (resp, _) = client.send_request(req, true).unwrap();
            let resp = resp.await.unwrap();
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            let mut out = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                let _ = body.flow_control().release_capacity(chunk.len());
                out.extend_from_slice(&chunk);
            }
            (status, String::from_utf8_lossy(&out).into_owned())
        })
    }
}

/// The inbound proxy forwards to the pod's IP (the original destination),
/// not 127.0.0.1, so a listener the application bound to localhost only stays private, for
/// plaintext clients and for meshed peers that choose the port themselves; listeners on
/// 0.0.0.0 are reached as before (and the proxy's own connection to the pod IP is not
/// redirected back to it).
#[test]
fn localhost_only_listeners_are_not_reachable_through_the_inbound_proxy() {
    const HTTP_PRIVATE: u16 = 9091;
    const TCP_PUBLIC: u16 = 9090;
    const TCP_PRIVATE: u16 = 9092;
    let mut net = Net::new();
    // Pod B is meshed; namespace A is "the network": an unmeshed client, no rules, no proxy.
    net.init(&net.b.clone());
    let b = net.b.clone();
    app(&b);
    app_on(&b, "127.0.0.1", HTTP_PRIVATE);
    echo_on(&b, "0.0.0.0", TCP_PUBLIC);
    echo_on(&b, "127.0.0.1", TCP_PRIVATE);
    net.proxy(&b, ID_B, r#"{"destinations":[]}"#);
    let (a, ipb) = (net.a.clone(), net.ip_b.clone());
    let logs = |net: &Net| format!("B's proxy log:\n{}", net.log(&net.b));

    // Plaintext HTTP (redirected to the inbound proxy by B's iptables).
    let (t, host) = (format!("{ipb}:{APP_PORT}"), format!("web.b:{APP_PORT}"));
    let open = in_ns(&a, move || http_get(&t, "/", &host)).unwrap();
    assert!(
        open.starts_with("HTTP/1.1 200") && open.contains("hello from b"),
        "an app on 0.0.0.0 is reachable: {open}\n{}",
        logs(&net)
    );
    let t = format!("{ipb}:{HTTP_PRIVATE}");
    let private = in_ns(&a, move || http_get(&t, "/", "web.b")).unwrap_or_default();
    assert!(
        !private.contains("hello from b") && !private.starts_with("HTTP/1.1 200"),
        "an app on 127.0.0.1 only must not be reachable over plaintext HTTP: {private}"
    );

    // Plaintext opaque TCP.
    let t = format!("{ipb}:{TCP_PUBLIC}");
    let echoed = in_ns(&a, move || tcp_ping(&t));
    assert_eq!(echoed, "echo ping\n", "{}", logs(&net));
    let t = format!("{ipb}:{TCP_PRIVATE}");
    let echoed = in_ns(&a, move || tcp_ping(&t));
    assert_eq!(
        echoed, "",
        "an app on 127.0.0.1 only must not be reachable over plaintext TCP"
    );

    // A meshed peer choosing the port: transport header (opaque) and tulle-orig-port (HTTP).
    let peer = std::sync::Arc::new(Peer::new(&net));
    let p = peer.clone();
    let echoed = in_ns(&a, move || p.tcp(TCP_PUBLIC));
    assert_eq!(echoed, "echo ping\n", "{}", logs(&net));
    let p = peer.clone();
    let echoed = in_ns(&a, move || p.tcp(TCP_PRIVATE));
    assert_eq!(
        echoed, "",
        "a transport header must not reach an app on 127.0.0.1 only"
    );
    let p = peer.clone();
    let (status, body) = in_ns(&a, move || p.http(APP_PORT));
    assert_eq!(status, 200, "{body}\n{}", logs(&net));
    assert!(body.ends_with(&format!("client-id={ID_A}")), "{body}");
    let p = peer.clone();
    let (status, body) = in_ns(&a, move || p.http(HTTP_PRIVATE));
    assert_eq!(
        status, 502,
        "tulle-orig-port must not reach an app on 127.0.0.1 only: {body}"
    );
    assert!(!body.contains("hello from b"), "{body}");

    // The application was reached at the pod IP, as the metrics say.
    let mb = in_ns(&b, || http_get("127.0.0.1:4191", "/metrics", "x")).unwrap();
    assert!(
        mb.contains(&format!("target_addr=\"{ipb}:{APP_PORT}\"")),
        "{mb}"
    );
    assert!(!mb.contains("target_addr=\"127.0.0.1:"), "{mb}");
}

/// The proxy intercepts IPv4 only: in a namespace with IPv6, `init` rejects IPv6 TCP both ways
/// (it would otherwise bypass the proxy: no mTLS, no policy), and leaves loopback alone.
#[test]
fn ipv6_tcp_is_rejected_not_bypassed() {
    const PORT: u16 = 9093;
    let net = Net::new();
    let (a, b) = (net.a.clone(), net.b.clone());
    echo_on(&a, "::", PORT);
    echo_on(&b, "::", PORT);
    let to_b = format!("[{}]:{PORT}", net.ip6_b);
    let to_a = format!("[{}]:{PORT}", net.ip6_a);
    let ping = |ns: &str, to: &str| {
        let to = to.to_string();
        in_ns(ns, move || tcp_ping(&to))
    };
    // Unmeshed, IPv6 works both ways: the assertions below can fail.
    assert_eq!(ping(&a, &to_b), "echo ping\n", "IPv6 before init");
    assert_eq!(ping(&b, &to_a), "echo ping\n", "IPv6 before init");

    let applied = net.init(&b);
    assert!(applied.contains("TULLE_PROXY_IPV6_IN"), "{applied}");
    assert_eq!(
        ping(&a, &to_b),
        "",
        "IPv6 into the meshed pod must be rejected"
    );
    assert_eq!(
        ping(&b, &to_a),
        "",
        "IPv6 out of the meshed pod must be rejected"
    );
    assert_eq!(
        ping(&b, &format!("[::1]:{PORT}")),
        "echo ping\n",
        "IPv6 loopback inside the pod keeps working"
    );
    // Idempotent, as `init` is: a second run neither fails nor adds a second jump.
    net.init(&b);
    let rules = must(&["ip", "netns", "exec", &b, "ip6tables", "-S"]);
    assert_eq!(
        rules.matches("-A INPUT -j TULLE_PROXY_IPV6_IN").count(),
        1,
        "{rules}"
    );
}
