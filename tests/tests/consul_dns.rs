//! `lane router --registry consul` with registrations whose address is a DNS name: `localhost`
//! is resolved (off the routing path) and routed to; a name that does not resolve is left out of
//! the table and reported in `/healthz` and `/metrics`.

mod common;

use std::time::Duration;

use common::TestEnv;
use common::consul::{self, consul_repo, named_server};
use lane_tests::consul::{ConsulDouble, Options};

fn register_at(
    consul: &ConsulDouble,
    id: &str,
    name: &str,
    lane: Option<&str>,
    host: &str,
    port: u16,
) {
    consul::register_ttl_at(consul, id, name, &consul::lane_tags(lane), host, port);
}

#[test]
fn the_router_resolves_dns_names_and_reports_those_that_do_not_resolve() {
    let env = TestEnv::new("consul-dns", 234);
    let consul = ConsulDouble::start(Options::default()).expect("the Consul double starts");
    let addr = consul.addr().to_string();
    let vars = [("CONSUL_HTTP_ADDR", addr.as_str())];
    let repo = consul_repo(&env, "");
    assert_eq!(env.run_in(&repo, &["create", "feature-x"], &vars).code, 0);
    assert_eq!(env.run_in(&repo, &["create", "feature-y"], &vars).code, 0);
    let (router, router_addr) = consul::start_router(&env, &vars);
    let admin = |path: &str| consul::admin(router_addr, path);
    let get = |lane: Option<&str>| consul::get_b(router_addr, lane);

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
