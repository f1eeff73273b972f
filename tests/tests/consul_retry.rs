//! An instance that died before its health check noticed: it is still registered as passing, so
//! the Consul-fed router's table still has it, and connecting to it is refused. Nothing of the
//! request was sent, so the router sends it to the next candidate of the same routing decision
//! (another instance of the lane, else the fallback the routing invariant gives) and counts it in
//! `/metrics`; no request fails.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::TestEnv;
use common::consul::{self, consul_repo, named_server};
use lane_tests::consul::{ConsulDouble, Options};

/// A port nothing listens on any more (an instance that died).
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Registered with a TTL check that passes: the double never probes it, as a check that has not
/// run since the instance died.
fn register(consul: &ConsulDouble, id: &str, name: &str, lane: Option<&str>, port: u16) {
    let tags = consul::lane_tags(lane);
    consul::register_ttl_at(consul, id, name, &tags, "127.0.0.1", port);
}

#[test]
fn a_refused_connection_is_retried_on_the_next_candidate_of_the_same_decision() {
    let env = TestEnv::new("consul-retry", 235);
    let consul = ConsulDouble::start(Options::default()).expect("the Consul double starts");
    let addr = consul.addr().to_string();
    let vars = [("CONSUL_HTTP_ADDR", addr.as_str())];
    let repo = consul_repo(&env, "");
    assert_eq!(env.run_in(&repo, &["create", "feature-x"], &vars).code, 0);
    assert_eq!(env.run_in(&repo, &["create", "feature-y"], &vars).code, 0);
    let (router, router_addr) = consul::start_router(&env, &vars);
    let admin = |path: &str| consul::admin(router_addr, path);
    let get = |lane: Option<&str>| consul::get_b(router_addr, lane);

    // feature-x: one live and one dead instance; feature-y: only a dead one; baseline: a dead
    // one and a live one.
    let live_x = named_server("feature-x-b");
    let base = named_server("baseline-b");
    register(&consul, "gaia.demo.b-1", "gaia.demo.b", None, dead_port());
    register(&consul, "gaia.demo.b-2", "gaia.demo.b", None, base);
    register(
        &consul,
        "gaia-lane.demo.b-x1",
        "gaia-lane.demo.b",
        Some("feature-x"),
        dead_port(),
    );
    register(
        &consul,
        "gaia-lane.demo.b-x2",
        "gaia-lane.demo.b",
        Some("feature-x"),
        live_x,
    );
    register(
        &consul,
        "gaia-lane.demo.b-y1",
        "gaia-lane.demo.b",
        Some("feature-y"),
        dead_port(),
    );
    common::wait_for("the lane instances", Duration::from_secs(20), &mut || {
        (get(Some("feature-x")).body == "feature-x-b").then_some(())
    });

    // Round robin reaches every instance in turn: no request fails.
    for _ in 0..8 {
        let r = get(Some("feature-x"));
        assert_eq!((r.status, r.body.as_str()), (200, "feature-x-b"), "{r:?}");
        assert_eq!(r.served_by(), vec!["demo.b@feature-x"], "{r:?}");
        let r = get(None);
        assert_eq!((r.status, r.body.as_str()), (200, "baseline-b"), "{r:?}");
        // feature-y's only instance refuses: the fallback is baseline, as if it were unhealthy.
        let r = get(Some("feature-y"));
        assert_eq!((r.status, r.body.as_str()), (200, "baseline-b"), "{r:?}");
        assert_eq!(r.served_by(), vec!["demo.b@baseline"], "{r:?}");
    }
    let metrics = admin("/metrics").expect("/metrics").body;
    let retries: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lane_router_connect_retries_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no retry counter in {metrics}"));
    assert!(
        retries >= 8,
        "feature-y alone retried 8 times: {retries}\n{metrics}"
    );
    drop(router);
    let log = std::fs::read_to_string(env.root.join("cmd3.err")).unwrap_or_default();
    assert!(log.contains("refused the connection"), "{log}");
    env.finish();
}
