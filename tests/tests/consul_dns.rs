//! `lane router --registry consul` with registrations whose address is a DNS name: `localhost`
//! is resolved (off the routing path) and routed to; a name that does not resolve is left out of
//! the table and reported in `/healthz` and `/metrics`.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{TestEnv, sample_manifest};
use lane_tests::consul::{ConsulDouble, Options};
use serde_json::json;

/// A tiny HTTP server answering every request with `name`, on its own thread.
fn named_server(name: &'static str) -> u16 {
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

fn register_at(
    consul: &ConsulDouble,
    id: &str,
    name: &str,
    lane: Option<&str>,
    host: &str,
    port: u16,
) {
    let tags: Vec<String> = lane.map(|l| vec![format!("lane={l}")]).unwrap_or_default();
    let body = json!({
        "ID": id, "Name": name, "Tags": tags, "Address": host, "Port": port,
        "Check": {"TTL": "10m", "Status": "passing"},
    });
    let (status, text) = consul
        .http(
            "PUT",
            "/v1/agent/service/register",
            None,
            body.to_string().as_bytes(),
        )
        .unwrap();
    assert_eq!(status, 200, "{text}");
}

#[test]
fn the_router_resolves_dns_names_and_reports_those_that_do_not_resolve() {
    let env = TestEnv::new("consul-dns", 234);
    let consul = ConsulDouble::start(Options::default()).expect("the Consul double starts");
    let addr = consul.addr().to_string();
    let vars = [("CONSUL_HTTP_ADDR", addr.as_str())];
    let manifest = sample_manifest(&env.bin, "b", None, "") + "\n[backend]\nkind = \"consul\"\n";
    let repo = env.repo("b", &manifest);
    assert_eq!(env.run_in(&repo, &["create", "feature-x"], &vars).code, 0);
    assert_eq!(env.run_in(&repo, &["create", "feature-y"], &vars).code, 0);
    let listen = format!("127.0.0.1:{}", env.ports.0);
    let router_addr: std::net::SocketAddr = listen.parse().unwrap();
    let router = env.spawn_in(
        &env.root,
        &["router", "--registry", "consul", "--listen", &listen],
        &vars,
    );
    let admin = |path: &str| common::try_http_get(router_addr, "localhost", path, &[]).ok();
    common::wait_for("the router to listen", Duration::from_secs(20), &mut || {
        admin("/healthz").filter(|r| r.status == 200)
    });
    let get = |lane: Option<&str>| {
        let headers: Vec<(&str, &str)> = lane.map(|l| vec![("x-lane", l)]).unwrap_or_default();
        common::http_get(router_addr, "b.demo.localhost", "/", &headers)
    };

    let base = named_server("baseline-b");
    let mine = named_server("feature-x-b");
    register_at(
        &consul,
        "gaia.demo.b-1",
        "gaia.demo.b",
        None,
        "localhost",
        base,
    );
    register_at(
        &consul,
        "gaia-lane.demo.b-feature-x",
        "gaia-lane.demo.b",
        Some("feature-x"),
        "localhost",
        mine,
    );
    // `.invalid` never resolves (RFC 2606).
    register_at(
        &consul,
        "gaia-lane.demo.b-feature-y",
        "gaia-lane.demo.b",
        Some("feature-y"),
        "no-such-host.invalid",
        mine,
    );
    common::wait_for(
        "the baseline at localhost",
        Duration::from_secs(20),
        &mut || (get(None).body == "baseline-b").then_some(()),
    );
    common::wait_for(
        "the lane instance at localhost",
        Duration::from_secs(20),
        &mut || (get(Some("feature-x")).body == "feature-x-b").then_some(()),
    );
    let metric = "lane_router_registry_unresolved_addresses{registry=\"consul\"} 1";
    let metrics = common::wait_for(
        "the unresolved name in /metrics",
        Duration::from_secs(20),
        &mut || admin("/metrics").filter(|r| r.body.contains(metric)),
    );
    assert!(metrics.status == 200, "{metrics:?}");
    let health = admin("/healthz").expect("/healthz");
    assert!(
        health
            .body
            .contains("gaia-lane.demo.b-feature-y: no-such-host.invalid"),
        "{}",
        health.body
    );
    // feature-y's only instance is left out: its requests fall back to baseline.
    assert_eq!(get(Some("feature-y")).body, "baseline-b");
    drop(router);
    let log = std::fs::read_to_string(env.root.join("cmd3.err")).unwrap_or_default();
    assert!(
        log.contains("no-such-host.invalid") && log.contains("does not resolve"),
        "{log}"
    );
    env.finish();
}
