//! The consul backend end to end: the real `lane` binary against the Consul HTTP API test double
//! (`lane_tests::consul`, itself checked against HashiCorp's Go client by
//! `tests/consul-conformance`). Lanes live in the double's KV store, written with check-and-set;
//! instances are what the double has registered.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::TcpListener;
use std::time::Duration;

use common::consul::{self, consul_repo, lane_doc, named_server};
use common::{TestEnv, sample_manifest};
use lane_tests::consul::{Access, ConsulDouble, Options, Policy};
use serde_json::{Value, json};

const ROOT: &str = "root-token";
const READER: &str = "read-token";

fn double() -> ConsulDouble {
    ConsulDouble::start(Options::default()).expect("the Consul double starts")
}

fn double_with_acls() -> ConsulDouble {
    let tokens = HashMap::from([
        (ROOT.to_owned(), Policy::management()),
        (
            READER.to_owned(),
            Policy {
                keys: vec![(String::new(), Access::Read)],
                services: vec![(String::new(), Access::Read)],
            },
        ),
    ]);
    ConsulDouble::start(Options {
        tokens: Some(tokens),
        addr: None,
    })
    .expect("the Consul double starts")
}

/// Registers an instance the way a deployment (or `lane deploy`) would, with a TCP check on a
/// listener of this test, already passing.
fn register(consul: &ConsulDouble, id: &str, name: &str, tags: &[String], port: u16) {
    let check = json!({"TCP": format!("127.0.0.1:{port}"), "Interval": "1s", "Status": "passing"});
    register_checked(consul, id, name, tags, port, check);
}

/// Registers with a TTL check: its status changes only when set (`force_check`), never by a probe,
/// so a test that turns it critical sees it stay critical however slow the machine is.
fn register_ttl(consul: &ConsulDouble, id: &str, name: &str, tags: &[String], port: u16) {
    let check = json!({"TTL": "10m", "Status": "passing"});
    register_checked(consul, id, name, tags, port, check);
}

fn register_checked(
    consul: &ConsulDouble,
    id: &str,
    name: &str,
    tags: &[String],
    port: u16,
    check: serde_json::Value,
) {
    consul::register_checked(consul, id, name, tags, "127.0.0.1", port, check);
}

#[test]
fn lanes_live_in_consul_kv_and_status_shows_registered_instances() {
    let env = TestEnv::new("consul-lanes", 105);
    let consul = double();
    let addr = consul.addr().to_string();
    let vars = [("CONSUL_HTTP_ADDR", addr.as_str())];
    let repo = consul_repo(&env, "prefix = \"acme\"\n");

    let out = env.run_in(&repo, &["create", "team", "--ttl", "2h"], &vars);
    assert_eq!(out.code, 0, "{out}");
    let out = env.run_in(&repo, &["create", "feature-x", "--parent", "team"], &vars);
    assert_eq!(out.code, 0, "{out}");
    let doc = lane_doc(&consul, "acme-lane/lanes/feature-x").expect("the lane document is in KV");
    assert_eq!(doc["id"], "feature-x");
    assert_eq!(doc["parent"], "team");
    assert_eq!(doc["owner"], "alice@example.com");

    // Creating it again is a conflict (the create is a cas=0 write).
    let out = env.run_in(&repo, &["create", "feature-x"], &vars);
    assert_eq!(out.code, 4, "{out}");
    assert!(
        out.stderr.contains("lane `feature-x` already exists"),
        "{out}"
    );
    // A parent that does not exist.
    let out = env.run_in(&repo, &["create", "orphan", "--parent", "nope"], &vars);
    assert_eq!(out.code, 3, "{out}");

    // A personal version in the lane's document, registered as acme-lane.demo.b, and a baseline
    // instance acme.demo.b.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut doc = doc;
    doc["services"] = json!({"demo.b": {
        "version": "feat@0123abcd", "branch": "feat", "commit": "0123abcd99",
        "owner": "alice@example.com", "deployed": 1
    }});
    let (status, _) = consul
        .http(
            "PUT",
            "/v1/kv/acme-lane/lanes/feature-x",
            None,
            doc.to_string().as_bytes(),
        )
        .unwrap();
    assert_eq!(status, 200);
    register(
        &consul,
        "acme-lane.demo.b-feature-x",
        "acme-lane.demo.b",
        &["lane=feature-x".into(), "owner=alice@example.com".into()],
        port,
    );
    register(&consul, "acme.demo.b-1", "acme.demo.b", &[], port);
    // Services of another prefix are not this configuration's.
    register(&consul, "gaia.demo.b-1", "gaia.demo.b", &[], port);

    let st = env.run_in(&repo, &["status", "--json"], &vars);
    assert_eq!(st.code, 0, "{st}");
    let st = st.json()["status"].clone();
    assert_eq!(st["backend"], "consul", "{st}");
    let lanes = st["lanes"].as_array().unwrap();
    assert_eq!(lanes.len(), 2, "{st}");
    let fx = lanes.iter().find(|l| l["id"] == "feature-x").unwrap();
    assert_eq!(fx["chain"], json!(["feature-x", "team"]), "{st}");
    let inst = &fx["instances"][0];
    assert_eq!(inst["id"], "acme-lane.demo.b-feature-x", "{st}");
    assert_eq!(inst["state"], "healthy", "{st}");
    assert_eq!(
        inst["placement"]["address"],
        format!("127.0.0.1:{port}"),
        "{st}"
    );
    assert_eq!(inst["version"]["version"], "feat@0123abcd", "{st}");
    let baseline = st["baseline"].as_array().unwrap();
    assert_eq!(baseline.len(), 1, "{st}");
    assert_eq!(baseline[0]["service"], "demo.b", "{st}");

    // An instance turning critical shows as unhealthy.
    assert!(consul.force_check("acme-lane.demo.b-feature-x", "critical"));
    let st = env.run_in(&repo, &["status", "--json"], &vars).json()["status"].clone();
    let fx = st["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == "feature-x")
        .unwrap()
        .clone();
    assert_eq!(fx["instances"][0]["state"], "unhealthy", "{st}");

    // Someone else's lane: refused without --force.
    let bob_config = env.root.join("bob-config");
    std::fs::create_dir_all(bob_config.join("lane")).unwrap();
    std::fs::write(bob_config.join("lane/config.toml"), "owner = \"bob\"\n").unwrap();
    let bob = [
        ("CONSUL_HTTP_ADDR", addr.as_str()),
        ("XDG_CONFIG_HOME", bob_config.to_str().unwrap()),
    ];
    let other = env.run_in(&repo, &["rm", "team"], &bob);
    assert_eq!(other.code, 5, "{other}");
    assert!(
        other
            .stderr
            .contains("lane `team` belongs to alice@example.com"),
        "{other}"
    );

    // rm deletes the document and deregisters the lane's instances.
    let out = env.run_in(&repo, &["rm", "feature-x"], &vars);
    assert_eq!(out.code, 0, "{out}");
    assert!(lane_doc(&consul, "acme-lane/lanes/feature-x").is_none());
    assert!(
        !consul
            .service_ids()
            .contains(&"acme-lane.demo.b-feature-x".to_owned()),
        "{:?}",
        consul.service_ids()
    );
    let out = env.run_in(&repo, &["ls", "--json"], &vars);
    let ids: Vec<String> = out
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec!["team".to_owned()], "{out}");
    drop(listener);
    env.finish();
}

#[test]
fn concurrent_changes_from_two_processes_lose_no_update() {
    let env = TestEnv::new("consul-cas", 106);
    let consul = double();
    let addr = consul.addr().to_string();
    let vars = [("CONSUL_HTTP_ADDR", addr.as_str())];
    let repo = consul_repo(&env, "");
    let out = env.run_in(&repo, &["create", "shared", "--ttl", "1h"], &vars);
    assert_eq!(out.code, 0, "{out}");
    let start = lane_doc(&consul, "gaia-lane/lanes/shared").unwrap()["expires"]
        .as_u64()
        .unwrap();
    // Every answer is late, so the two processes' read-modify-write cycles overlap.
    consul.set_delay(Duration::from_millis(30));
    let rounds = 4;
    for _ in 0..rounds {
        let a = env.spawn_in(&repo, &["extend", "shared", "--by", "1h"], &vars);
        let b = env.spawn_in(&repo, &["extend", "shared", "--by", "1h"], &vars);
        let (a, b) = (
            a.wait(Duration::from_secs(60)),
            b.wait(Duration::from_secs(60)),
        );
        assert_eq!(a.code, 0, "{a}");
        assert_eq!(b.code, 0, "{b}");
    }
    consul.set_delay(Duration::ZERO);
    let end = lane_doc(&consul, "gaia-lane/lanes/shared").unwrap()["expires"]
        .as_u64()
        .unwrap();
    assert_eq!(
        end - start,
        2 * rounds * 3600,
        "every one of the {} extensions counted",
        2 * rounds
    );

    // Two creates of one lane at once: exactly one wins.
    let a = env.spawn_in(&repo, &["create", "race"], &vars);
    let b = env.spawn_in(&repo, &["create", "race"], &vars);
    let mut codes = [
        a.wait(Duration::from_secs(60)).code,
        b.wait(Duration::from_secs(60)).code,
    ];
    codes.sort();
    assert_eq!(codes, [0, 4], "one create wins, the other is a conflict");
    env.finish();
}

#[test]
fn gc_from_two_processes_at_once_reclaims_each_lane_once() {
    let env = TestEnv::new("consul-gc", 107);
    let consul = double();
    let addr = consul.addr().to_string();
    let vars = [("CONSUL_HTTP_ADDR", addr.as_str())];
    let repo = consul_repo(&env, "");
    let expiring: Vec<String> = (0..6).map(|i| format!("old-{i}")).collect();
    for id in &expiring {
        let out = env.run_in(&repo, &["create", id, "--ttl", "1s"], &vars);
        assert_eq!(out.code, 0, "{out}");
    }
    let out = env.run_in(&repo, &["create", "keep", "--ttl", "1h"], &vars);
    assert_eq!(out.code, 0, "{out}");
    // An instance in an expiring lane, and one whose lane never existed.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut doc = lane_doc(&consul, "gaia-lane/lanes/old-0").unwrap();
    doc["services"] = json!({"demo.b": {
        "version": "f@1", "branch": "f", "commit": "1", "owner": "alice@example.com", "deployed": 1
    }});
    let (status, _) = consul
        .http(
            "PUT",
            "/v1/kv/gaia-lane/lanes/old-0",
            None,
            doc.to_string().as_bytes(),
        )
        .unwrap();
    assert_eq!(status, 200);
    register(
        &consul,
        "gaia-lane.demo.b-old-0",
        "gaia-lane.demo.b",
        &["lane=old-0".into()],
        port,
    );
    register(
        &consul,
        "gaia-lane.demo.b-ghost",
        "gaia-lane.demo.b",
        &["lane=ghost".into()],
        port,
    );
    std::thread::sleep(Duration::from_millis(2100));

    consul.set_delay(Duration::from_millis(20));
    let a = env.spawn_in(&repo, &["gc", "--json"], &vars);
    let b = env.spawn_in(&repo, &["gc", "--json"], &vars);
    let (a, b) = (
        a.wait(Duration::from_secs(60)),
        b.wait(Duration::from_secs(60)),
    );
    consul.set_delay(Duration::ZERO);
    assert_eq!(a.code, 0, "{a}");
    assert_eq!(b.code, 0, "{b}");
    let removed = |out: &common::Out, field: &str| -> Vec<String> {
        out.json()[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let (la, lb) = (removed(&a, "lanes_removed"), removed(&b, "lanes_removed"));
    let both: BTreeSet<&String> = la.iter().chain(lb.iter()).collect();
    assert_eq!(
        la.len() + lb.len(),
        expiring.len(),
        "each expired lane is reclaimed exactly once: {la:?} {lb:?}"
    );
    assert_eq!(both, expiring.iter().collect::<BTreeSet<_>>());
    let (ia, ib) = (
        removed(&a, "instances_removed"),
        removed(&b, "instances_removed"),
    );
    let mut instances: Vec<&String> = ia.iter().chain(ib.iter()).collect();
    instances.sort();
    assert_eq!(
        instances,
        vec!["gaia-lane.demo.b-ghost", "gaia-lane.demo.b-old-0"],
        "each instance is deregistered once"
    );
    assert!(
        consul.service_ids().is_empty(),
        "{:?}",
        consul.service_ids()
    );
    assert!(lane_doc(&consul, "gaia-lane/lanes/keep").is_some());
    for id in &expiring {
        assert!(lane_doc(&consul, &format!("gaia-lane/lanes/{id}")).is_none());
    }
    drop(listener);
    env.finish();
}

#[test]
fn a_bad_or_missing_token_is_a_clear_error_naming_consul_http_token() {
    let env = TestEnv::new("consul-acl", 108);
    let consul = double_with_acls();
    let addr = consul.addr().to_string();
    let repo = consul_repo(&env, "");
    let with = |token: &str| -> Vec<(&str, String)> {
        vec![
            ("CONSUL_HTTP_ADDR", addr.clone()),
            ("CONSUL_HTTP_TOKEN", token.to_owned()),
        ]
    };
    let run = |args: &[&str], vars: &[(&str, String)]| {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.run_in(&repo, args, &vars)
    };
    let out = run(&["ls"], &with("not-a-token"));
    assert_eq!(out.code, 7, "{out}");
    assert!(out.stderr.contains("ACL not found"), "{out}");
    assert!(out.stderr.contains("CONSUL_HTTP_TOKEN"), "{out}");
    // No token at all: Consul's anonymous token may read nothing here.
    let out = run(&["create", "x"], &[("CONSUL_HTTP_ADDR", addr.clone())]);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("CONSUL_HTTP_TOKEN"), "{out}");
    // A token that may only read.
    let out = run(&["create", "x"], &with(READER));
    assert_eq!(out.code, 5, "{out}");
    assert!(out.stderr.contains("Permission denied"), "{out}");
    assert!(out.stderr.contains("CONSUL_HTTP_TOKEN"), "{out}");
    let out = run(&["ls"], &with(READER));
    assert_eq!(out.code, 0, "{out}");
    // The right token.
    let out = run(&["create", "x"], &with(ROOT));
    assert_eq!(out.code, 0, "{out}");
    assert!(lane_doc(&consul, "gaia-lane/lanes/x").is_some());
    env.finish();
}

#[test]
fn an_unreachable_consul_is_a_clear_error_and_lanes_work_again_once_it_is_back() {
    let env = TestEnv::new("consul-down", 109);
    let consul = double();
    let addr = consul.addr().to_string();
    let vars = [("CONSUL_HTTP_ADDR", addr.as_str())];
    let repo = consul_repo(&env, "");
    assert_eq!(env.run_in(&repo, &["create", "x"], &vars).code, 0);
    consul.set_unreachable(true);
    for args in [&["ls"][..], &["status"], &["create", "y"], &["gc"]] {
        let out = env.run_in(&repo, args, &vars);
        assert_eq!(out.code, 7, "`lane {}`: {out}", args.join(" "));
        assert!(
            out.stderr.contains(&format!(
                "cannot reach Consul at http://{addr} (CONSUL_HTTP_ADDR)"
            )),
            "`lane {}`: {out}",
            args.join(" ")
        );
    }
    assert!(env.agent_pid().is_none(), "no local agent was started");
    consul.set_unreachable(false);
    let mut listed = None;
    for _ in 0..50 {
        let out = env.run_in(&repo, &["ls", "--json"], &vars);
        if out.code == 0 {
            listed = Some(out);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let listed = listed.expect("lane ls works once Consul is back");
    assert!(listed.stdout.contains("\"x\""), "{listed}");
    // A CA file that cannot be read, and TLS to an agent that speaks plain HTTP.
    let out = env.run_in(
        &repo,
        &["ls"],
        &[
            ("CONSUL_HTTP_ADDR", addr.as_str()),
            ("CONSUL_HTTP_SSL", "true"),
            ("CONSUL_CACERT", "/nonexistent/ca.pem"),
        ],
    );
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains("CONSUL_CACERT /nonexistent/ca.pem"),
        "{out}"
    );
    let out = env.run_in(
        &repo,
        &["ls"],
        &[
            ("CONSUL_HTTP_ADDR", addr.as_str()),
            ("CONSUL_HTTP_SSL", "true"),
        ],
    );
    assert_eq!(out.code, 7, "{out}");
    assert!(
        out.stderr.contains(&format!(
            "cannot reach Consul at https://{addr} (CONSUL_HTTP_ADDR)"
        )),
        "{out}"
    );
    // A CONSUL_HTTP_ADDR that cannot be right is named with where the backend was chosen.
    let out = env.run_in(
        &repo,
        &["ls"],
        &[("CONSUL_HTTP_ADDR", "unix:///tmp/c.sock")],
    );
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("lane.toml:"), "{out}");
    assert!(
        out.stderr.contains("CONSUL_HTTP_ADDR `unix:///tmp/c.sock`"),
        "{out}"
    );
    env.finish();
}

#[test]
fn deploy_runs_the_version_locally_and_registers_it_and_rm_deregisters_it() {
    let env = TestEnv::new("consul-deploy", 110);
    let consul = double();
    let addr = consul.addr().to_string();
    let vars = [("CONSUL_HTTP_ADDR", addr.as_str())];
    let repo = consul_repo(&env, "");
    env.git(&repo, &["checkout", "-q", "-b", "feat"]);

    let out = env.run_in(&repo, &["deploy", "--lane", "feature-x"], &vars);
    assert_eq!(out.code, 0, "{out}");
    let id = "gaia-lane.demo.b-feature-x";
    assert_eq!(consul.service_ids(), vec![id.to_owned()]);
    let tags = consul.tags(id).unwrap();
    let commit = env.git(&repo, &["rev-parse", "HEAD"]);
    for want in [
        "lane=feature-x".to_owned(),
        "owner=alice@example.com".to_owned(),
        format!("version={}", commit.trim()),
        "branch=feat".to_owned(),
    ] {
        assert!(tags.contains(&want), "{want} in {tags:?}");
    }
    let doc = lane_doc(&consul, "gaia-lane/lanes/feature-x").expect("deploy created the lane");
    assert_eq!(doc["services"]["demo.b"]["branch"], "feat", "{doc}");

    // Consul's own health check (the double probes /healthz) keeps it passing.
    let reply = consul
        .http(
            "GET",
            "/v1/health/service/gaia-lane.demo.b?passing&tag=lane%3Dfeature-x",
            None,
            b"",
        )
        .unwrap();
    let entries: Value = serde_json::from_str(&reply.1).unwrap();
    let entry = &entries[0];
    assert_eq!(entry["Service"]["ID"], id, "{entries}");
    let port = entry["Service"]["Port"].as_u64().unwrap();
    let check = entry["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ServiceID"] == id)
        .unwrap()
        .clone();
    assert_eq!(check["Type"], "http", "{check}");
    let st = env.run_in(&repo, &["status", "--json"], &vars).json()["status"].clone();
    let inst = &st["lanes"][0]["instances"][0];
    assert_eq!(inst["state"], "healthy", "{st}");
    assert_eq!(
        inst["placement"]["address"],
        format!("127.0.0.1:{port}"),
        "{st}"
    );
    assert!(
        !env.processes().is_empty(),
        "the version runs under the local supervisor"
    );

    // The version stops answering its health check: Consul marks it critical.
    let service_pids: Vec<u32> = env
        .processes()
        .into_iter()
        .filter(|(_, c)| c.contains("sample-service"))
        .map(|(p, _)| p)
        .collect();
    assert!(!service_pids.is_empty(), "the sample service runs");
    for p in &service_pids {
        common::kill(*p, "STOP");
    }
    common::wait_for(
        "the check to go critical",
        Duration::from_secs(20),
        &mut || {
            let (_, body) = consul
                .http(
                    "GET",
                    "/v1/health/service/gaia-lane.demo.b?passing",
                    None,
                    b"",
                )
                .ok()?;
            (body.trim() == "[]").then_some(())
        },
    );
    for p in &service_pids {
        common::kill(*p, "CONT");
    }

    let out = env.run_in(&repo, &["rm", "feature-x"], &vars);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        consul.service_ids().is_empty(),
        "{:?}",
        consul.service_ids()
    );
    assert!(lane_doc(&consul, "gaia-lane/lanes/feature-x").is_none());
    common::wait_for(
        "the local version to stop",
        Duration::from_secs(20),
        &mut || {
            (!env
                .processes()
                .iter()
                .any(|(_, c)| c.contains("sample-service")))
            .then_some(())
        },
    );
    env.finish();
}

#[test]
fn the_router_follows_consul_and_serves_the_last_table_when_it_is_down() {
    let env = TestEnv::new("consul-router", 111);
    let consul = double();
    let addr = consul.addr().to_string();
    let vars = [("CONSUL_HTTP_ADDR", addr.as_str())];
    let repo = consul_repo(&env, "");
    assert_eq!(env.run_in(&repo, &["create", "feature-x"], &vars).code, 0);
    let (router, router_addr) = consul::start_router(&env, &vars);
    let admin = |path: &str| consul::admin(router_addr, path);
    let get = |lane: Option<&str>| consul::get_b(router_addr, lane);

    // A baseline instance registers: the router uses it within one blocking round.
    let base = named_server("baseline-b");
    let registered = std::time::Instant::now();
    register(&consul, "gaia.demo.b-1", "gaia.demo.b", &[], base);
    common::wait_for(
        "the baseline instance",
        Duration::from_secs(10),
        &mut || (get(None).body == "baseline-b").then_some(()),
    );
    eprintln!("registration to routed request: {:?}", registered.elapsed());

    // A lane instance: requests of the lane reach it, others stay on baseline.
    let mine = named_server("feature-x-b");
    register_ttl(
        &consul,
        "gaia-lane.demo.b-feature-x",
        "gaia-lane.demo.b",
        &["lane=feature-x".into()],
        mine,
    );
    common::wait_for("the lane instance", Duration::from_secs(10), &mut || {
        (get(Some("feature-x")).body == "feature-x-b").then_some(())
    });
    let r = get(Some("feature-x"));
    assert_eq!(r.served_by(), vec!["demo.b@feature-x"], "{r:?}");
    assert_eq!(get(None).body, "baseline-b");
    assert_eq!(get(Some("other")).body, "baseline-b");

    // It turns critical (as an instance about to go away does): its lane falls back to baseline,
    // and no request fails on the way, while requests keep coming.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match common::try_http_get(
                    router_addr,
                    "b.demo.localhost",
                    "/",
                    &[("x-lane", "feature-x")],
                ) {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => failed.push(format!("{} {}", r.status, r.body)),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(consul.force_check("gaia-lane.demo.b-feature-x", "critical"));
    common::wait_for(
        "the critical instance to leave",
        Duration::from_secs(10),
        &mut || (get(Some("feature-x")).body == "baseline-b").then_some(()),
    );
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.join().unwrap();
    assert!(ok > 0 && failed.is_empty(), "{ok} ok, failed: {failed:?}");

    // Consul goes away: the router keeps the last table and says so.
    assert!(consul.force_check("gaia-lane.demo.b-feature-x", "passing"));
    common::wait_for(
        "the instance to pass again",
        Duration::from_secs(10),
        &mut || (get(Some("feature-x")).body == "feature-x-b").then_some(()),
    );
    consul.set_unreachable(true);
    common::wait_for(
        "/healthz to report Consul",
        Duration::from_secs(20),
        &mut || admin("/healthz").filter(|r| r.body.contains("registry consul: unreachable")),
    );
    let metrics = admin("/metrics").unwrap().body;
    assert!(
        metrics.contains("lane_router_registry_up{registry=\"consul\"} 0"),
        "{metrics}"
    );
    assert_eq!(get(Some("feature-x")).body, "feature-x-b", "fail static");
    assert_eq!(get(None).body, "baseline-b", "fail static");

    // Back, with a reset index: the router follows again and sees what changed.
    consul.reset_index();
    consul.set_unreachable(false);
    common::wait_for(
        "/healthz to follow Consul again",
        Duration::from_secs(20),
        &mut || admin("/healthz").filter(|r| r.body.contains("registry consul: following")),
    );
    let (status, _) = consul
        .http(
            "PUT",
            "/v1/agent/service/deregister/gaia-lane.demo.b-feature-x",
            None,
            b"",
        )
        .unwrap();
    assert_eq!(status, 200);
    common::wait_for(
        "the deregistration after the reset",
        Duration::from_secs(10),
        &mut || (get(Some("feature-x")).body == "baseline-b").then_some(()),
    );
    let out = router.kill9();
    assert!(
        out.stderr.contains("Consul does not answer") && out.stderr.contains("answers again"),
        "{out}"
    );
    env.finish();
}

#[test]
fn status_watchers_hear_of_lane_registration_and_health_changes_at_once() {
    use lane_api::Backend;
    let consul = double();
    let settings = lane_consul::Settings::from_lookup(&lane_consul::Options::default(), |k| {
        (k == "CONSUL_HTTP_ADDR").then(|| consul.addr().to_string())
    })
    .unwrap();
    let backend = lane_consul::ConsulBackend::with_settings(settings).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    register(&consul, "gaia.demo.b-1", "gaia.demo.b", &[], port);
    let wait = Duration::from_secs(20);
    // Each change wakes a watcher long before its wait is out.
    type Change<'a> = (&'a str, Box<dyn Fn() + 'a>);
    let changes: Vec<Change> = vec![
        (
            "a lane document",
            Box::new(|| {
                let (s, _) = consul
                    .http("PUT", "/v1/kv/gaia-lane/lanes/x", None, b"{}")
                    .unwrap();
                assert_eq!(s, 200);
            }),
        ),
        (
            "a registration",
            Box::new(|| register(&consul, "gaia.demo.b-2", "gaia.demo.b", &[], port)),
        ),
        (
            "a check turning critical",
            Box::new(|| assert!(consul.force_check("gaia.demo.b-1", "critical"))),
        ),
    ];
    for (what, change) in changes {
        let since = rt.block_on(backend.status()).unwrap().revision;
        let started = std::time::Instant::now();
        let got = rt.block_on(async {
            let waiting = backend.wait_for_change(Some(&since), wait);
            tokio::pin!(waiting);
            // Let the blocking queries reach the double, then change something.
            tokio::select! {
                r = &mut waiting => panic!("woke before any change: {r:?}"),
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            change();
            waiting.await
        });
        let got = got.unwrap();
        assert_ne!(got, since, "{what}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: {:?}",
            started.elapsed()
        );
    }
    // Nothing changes (once the next probe has found the instance passing again): the wait runs
    // out and the revision stays.
    std::thread::sleep(Duration::from_millis(2500));
    let since = rt.block_on(backend.status()).unwrap().revision;
    let got = rt
        .block_on(backend.wait_for_change(Some(&since), Duration::from_millis(300)))
        .unwrap();
    assert_eq!(got, since);
    drop(listener);
}

#[test]
fn assign_moves_a_registered_version_to_another_lane() {
    let env = TestEnv::new("consul-assign", 112);
    let consul = double();
    let addr = consul.addr().to_string();
    let vars = [("CONSUL_HTTP_ADDR", addr.as_str())];
    let repo = consul_repo(&env, "");
    let out = env.run_in(&repo, &["deploy", "--lane", "first"], &vars);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(env.run_in(&repo, &["create", "second"], &vars).code, 0);
    let port_of = |id: &str| consul::port_of(&consul, id);
    let port = port_of("gaia-lane.demo.b-first").expect("registered in lane first");

    let out = env.run_in(
        &repo,
        &["assign", "demo.b", "--from", "first", "--to", "second"],
        &vars,
    );
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        consul.service_ids(),
        vec!["gaia-lane.demo.b-second".to_owned()]
    );
    let tags = consul.tags("gaia-lane.demo.b-second").unwrap();
    assert!(tags.contains(&"lane=second".to_owned()), "{tags:?}");
    assert_eq!(
        port_of("gaia-lane.demo.b-second"),
        Some(port),
        "the same process"
    );
    let second = lane_doc(&consul, "gaia-lane/lanes/second").unwrap();
    assert!(second["services"]["demo.b"].is_object(), "{second}");
    let first = lane_doc(&consul, "gaia-lane/lanes/first").unwrap();
    assert!(first["services"].as_object().unwrap().is_empty(), "{first}");

    // rm of the new lane deregisters it and stops the process.
    let out = env.run_in(&repo, &["rm", "second"], &vars);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        consul.service_ids().is_empty(),
        "{:?}",
        consul.service_ids()
    );
    assert!(
        consul
            .kv("gaia-lane/registrations/gaia-lane.demo.b-second")
            .is_none()
    );
    common::wait_for(
        "the local version to stop",
        Duration::from_secs(20),
        &mut || {
            (!env
                .processes()
                .iter()
                .any(|(_, c)| c.contains("sample-service")))
            .then_some(())
        },
    );
    env.finish();
}

/// Issue 10: a consul deploy gives the lane's process the same rewritten data addresses as the
/// local backend (the local supervisor runs it), provisions the lane's data (here an Apollo
/// cluster, against the Apollo double), records it in the Consul lane document, and `lane rm`
/// removes it.
#[test]
fn a_consul_deploy_injects_the_lanes_data_env_and_rm_removes_its_data() {
    use lane_tests::apollo::{ApolloDouble, Options as ApolloOptions};
    let env = TestEnv::new("consul-data", 221);
    let consul = double();
    let apollo = ApolloDouble::start(ApolloOptions {
        tokens: HashMap::from([("consul-data-token".to_owned(), vec!["cart".to_owned()])]),
        apps: vec!["cart".into()],
        ..ApolloOptions::default()
    })
    .expect("the Apollo double starts");
    let addr = consul.addr().to_string();
    let vars = [
        ("CONSUL_HTTP_ADDR", addr.as_str()),
        ("CART_APOLLO_TOKEN", "consul-data-token"),
    ];
    let data = format!(
        "\n[data.orders]\nkind = \"mysql\"\nurl = \"mysql://app:pw@127.0.0.1:1/orders\"\n\
         env = \"ORDERS_DSN\"\n\
         [data.config]\nkind = \"apollo\"\nurl = \"{}\"\nenv = \"APOLLO_META\"\napp = \"cart\"\n\
         token_env = \"CART_APOLLO_TOKEN\"\n",
        apollo.url()
    );
    // No MySQL listens on port 1: first the apollo binding alone, then the failure with mysql.
    let manifest = sample_manifest(&env.bin, "b", None, "")
        + &data[data.find("[data.config]").unwrap() - 1..]
        + "\n[backend]\nkind = \"consul\"\n";
    let repo = env.repo("b", &manifest);
    env.git(&repo, &["checkout", "-q", "-b", "feat"]);
    let out = env.run_in(&repo, &["deploy", "--lane", "feat-k"], &vars);
    assert_eq!(out.code, 0, "{out}");
    assert!(apollo.has_cluster("DEV", "cart", "lane-feat-k"));
    let doc = lane_doc(&consul, "gaia-lane/lanes/feat-k").expect("the lane document");
    assert_eq!(
        doc["data"],
        json!([{"kind": "apollo", "name": "config", "target": "lane-feat-k"}]),
        "{doc}"
    );
    let pid = env
        .processes()
        .into_iter()
        .find(|(_, c)| c.contains("sample-service"))
        .expect("the version runs")
        .0;
    let environ = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap())
        .into_owned();
    assert!(
        environ.contains("APOLLO_CLUSTER=lane-feat-k\0"),
        "{environ}"
    );
    assert!(
        environ.contains(&format!("APOLLO_META={}\0", apollo.url())),
        "{environ}"
    );
    let ls = env.run_in(&repo, &["data", "ls", "--json"], &vars).json();
    assert_eq!(ls[0]["target"], "lane-feat-k", "{ls:#}");
    assert_eq!(ls[0]["size"], "0 items", "{ls:#}");

    let out = env.run_in(&repo, &["rm", "feat-k"], &vars);
    assert_eq!(out.code, 0, "{out}");
    assert!(lane_doc(&consul, "gaia-lane/lanes/feat-k").is_none());
    assert!(
        !apollo.has_cluster("DEV", "cart", "lane-feat-k"),
        "the lane's data went with it"
    );

    // A binding whose server is down: the deploy fails naming it, and nothing stays registered.
    std::fs::write(
        repo.join("lane.toml"),
        sample_manifest(&env.bin, "b", None, "") + &data + "\n[backend]\nkind = \"consul\"\n",
    )
    .unwrap();
    let out = env.run_in(&repo, &["deploy", "--lane", "feat-m"], &vars);
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains("data binding `orders`") && out.stderr.contains("127.0.0.1:1"),
        "{out}"
    );
    assert!(
        consul.service_ids().is_empty(),
        "{:?}",
        consul.service_ids()
    );
    env.finish();
}
