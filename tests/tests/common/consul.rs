//! Set-up shared by the consul end-to-end tests (`consul.rs`, `consul_dns.rs`, `consul_retry.rs`,
//! `consul_machines.rs`): a service repo on the consul backend, instances registered with the
//! Consul double, tiny named HTTP servers for them to point at, and `lane router --registry
//! consul` started and listening.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use lane_tests::consul::ConsulDouble;
use serde_json::{Value, json};

use super::{HttpReply, Running, TestEnv, sample_manifest};

/// A service repo `b` whose `lane.toml` chooses the consul backend (with `extra` in `[backend]`).
pub fn consul_repo(env: &TestEnv, extra: &str) -> PathBuf {
    let manifest =
        sample_manifest(&env.bin, "b", None, "") + "\n[backend]\nkind = \"consul\"\n" + extra;
    env.repo("b", &manifest)
}

/// The lane document at KV `key`, if there is one.
pub fn lane_doc(consul: &ConsulDouble, key: &str) -> Option<Value> {
    consul
        .kv(key)
        .map(|v| serde_json::from_slice(&v).expect("lane documents are JSON"))
}

/// The port instance `id` of service `gaia-lane.demo.b` is registered with.
pub fn port_of(consul: &ConsulDouble, id: &str) -> Option<u64> {
    let (_, body) = consul
        .http("GET", "/v1/health/service/gaia-lane.demo.b", None, b"")
        .ok()?;
    let entries: Value = serde_json::from_str(&body).ok()?;
    entries
        .as_array()?
        .iter()
        .find(|e| e["Service"]["ID"] == id)
        .and_then(|e| e["Service"]["Port"].as_u64())
}

/// Registers instance `id` of service `name` at `host:port` through the double's agent API, with
/// `tags` and the health check `check`.
pub fn register_checked(
    consul: &ConsulDouble,
    id: &str,
    name: &str,
    tags: &[String],
    host: &str,
    port: u16,
    check: Value,
) {
    let body = json!({
        "ID": id,
        "Name": name,
        "Tags": tags,
        "Address": host,
        "Port": port,
        "Check": check,
    });
    let (status, text) = consul
        .http(
            "PUT",
            "/v1/agent/service/register",
            None,
            body.to_string().as_bytes(),
        )
        .expect("register");
    assert_eq!(status, 200, "{text}");
}

/// Registers with a TTL check that passes: its status changes only when set, never by a probe.
pub fn register_ttl_at(
    consul: &ConsulDouble,
    id: &str,
    name: &str,
    tags: &[String],
    host: &str,
    port: u16,
) {
    let check = json!({"TTL": "10m", "Status": "passing"});
    register_checked(consul, id, name, tags, host, port, check);
}

/// The tags of an instance in `lane` (`lane=<id>`), none for a baseline instance.
pub fn lane_tags(lane: Option<&str>) -> Vec<String> {
    lane.map(|l| vec![format!("lane={l}")]).unwrap_or_default()
}

/// A tiny HTTP server answering every request with `name`, on its own thread; returns its port.
pub fn named_server(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                    name.len()
                );
            });
        }
    });
    port
}

/// `lane router --registry consul` on `env`'s first port with `vars` (`CONSUL_HTTP_ADDR`), once
/// its `/healthz` answers 200; returns it and its address.
pub fn start_router(env: &TestEnv, vars: &[(&str, &str)]) -> (Running, SocketAddr) {
    let listen = format!("127.0.0.1:{}", env.ports.0);
    let router_addr: SocketAddr = listen.parse().unwrap();
    let router = env.spawn_in(
        &env.root,
        &["router", "--registry", "consul", "--listen", &listen],
        vars,
    );
    super::wait_for("the router to listen", Duration::from_secs(20), &mut || {
        admin(router_addr, "/healthz").filter(|r| r.status == 200)
    });
    (router, router_addr)
}

/// `path` of the router's admin endpoints (host `localhost`), or `None` if it does not answer.
pub fn admin(router: SocketAddr, path: &str) -> Option<HttpReply> {
    super::try_http_get(router, "localhost", path, &[]).ok()
}

/// `GET /` of service `demo.b` through the router, in `lane` (`x-lane`) or without one.
pub fn get_b(router: SocketAddr, lane: Option<&str>) -> HttpReply {
    let headers: Vec<(&str, &str)> = lane.map(|l| vec![("x-lane", l)]).unwrap_or_default();
    super::http_get(router, "b.demo.localhost", "/", &headers)
}
