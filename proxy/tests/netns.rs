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
        for (ns, dev, ip) in [(&net.a, &va, &net.ip_a), (&net.b, &vb, &net.ip_b)] {
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
    let (tx, rx) = std::sync::mpsc::channel();
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let l = TcpListener::bind(("0.0.0.0", APP_PORT)).unwrap();
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
                && l.contains(&format!("target_addr=\"127.0.0.1:{APP_PORT}\""))
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
