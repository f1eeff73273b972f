//! `lane trace`, `lane down`, and `lane switch` with `lane proxy`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{TestEnv, sample_manifest};

/// Baseline a → b (a started with `extra` flags) and lane feature-x with its own b.
fn baseline_and_lane(env: &TestEnv, a_extra: &str) {
    env.repo("a", &sample_manifest(&env.bin, "a", Some("b"), a_extra));
    let b = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    let ws = env.root.join("repos").join("lane-workspace.toml");
    std::fs::write(
        &ws,
        "[[service]]\npath = \"a\"\n[[service]]\npath = \"b\"\n",
    )
    .unwrap();
    env.ok(&["baseline", "up", "--file", ws.to_str().unwrap()]);
    env.branch(&b, "feature-x-branch");
    env.ok_in(&b, &["deploy", "--lane", "feature-x"]);
}

#[test]
fn trace_catches_a_service_that_drops_the_lane_header() {
    let env = TestEnv::new("trace-drop", 18);
    baseline_and_lane(&env, " --drop-lane-header");
    let out = env.run(&["trace", "demo.a", "--lane", "feature-x"]);
    assert_eq!(out.code, 8, "{out}");
    assert!(out.stdout.contains("WRONG"), "{out}");
    assert!(
        out.stdout.contains("did not forward the lane header") && out.stdout.contains("demo.a"),
        "blames demo.a: {out}"
    );
    let json = env.run(&["trace", "demo.a", "--lane", "feature-x", "--json"]);
    assert_eq!(json.code, 8, "{json}");
    let report = json.json();
    assert_eq!(report["hops"][1]["service"], "demo.b", "{report:#}");
    assert_eq!(report["hops"][1]["served_by"], "baseline");
    assert_eq!(report["hops"][1]["expected"], "feature-x");
    assert!(!report["problems"].as_array().unwrap().is_empty());
    env.finish();
}

#[test]
fn trace_passes_for_a_well_behaved_service() {
    let env = TestEnv::new("trace-ok", 19);
    baseline_and_lane(&env, "");
    let out = env.run(&["trace", "demo.a", "--lane", "feature-x"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        !out.stdout.contains("WRONG") && !out.stdout.contains("problem"),
        "{out}"
    );
    let report = env
        .ok(&["trace", "demo.a", "--lane", "feature-x", "--json"])
        .json();
    let served: Vec<String> = report["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{}@{}",
                h["service"].as_str().unwrap(),
                h["served_by"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(served, ["demo.a@baseline", "demo.b@feature-x"]);
    // A URL target works too.
    let router = env.router();
    let url = format!("http://a.demo.localhost:{}/", router.port());
    let out = env.ok(&["trace", &url, "--lane", "feature-x"]);
    assert!(out.stdout.contains("feature-x"), "{out}");
    env.finish();
}

#[test]
fn down_stops_the_agent_and_everything_it_ran() {
    let env = TestEnv::new("down", 20);
    baseline_and_lane(&env, "");
    let status = env.status();
    let mut pids: Vec<u32> = status["baseline"]
        .as_array()
        .unwrap()
        .iter()
        .chain(status["lanes"][0]["instances"].as_array().unwrap())
        .map(|i| i["placement"]["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(pids.len(), 3);
    let agent = env.agent_pid().expect("an agent runs");
    pids.push(agent);
    let router: SocketAddr = status["router"].as_str().unwrap().parse().unwrap();

    let out = env.ok(&["down"]);
    assert!(out.stdout.contains("stopped"), "{out}");
    for pid in &pids {
        assert!(
            !common::alive(*pid),
            "pid {pid} ({}) is gone",
            common::cmdline(*pid)
        );
    }
    assert!(env.processes().is_empty(), "{:#?}", env.processes());
    assert!(!env.home.join("agent.sock").exists());
    assert!(
        common::try_http_get(router, "a.demo.localhost", "/", &[]).is_err(),
        "the router is gone"
    );
    // A second `lane down` has nothing to stop.
    let out = env.ok(&["down"]);
    assert!(out.stdout.contains("no lane agent"), "{out}");
    // The lanes survive in the state; the next command restarts their versions.
    let status = env.status();
    assert_eq!(status["lanes"][0]["id"], "feature-x");
    env.wait_for("the versions to come back", Duration::from_secs(15), || {
        let st = env.status();
        let all: Vec<&serde_json::Value> = st["baseline"]
            .as_array()?
            .iter()
            .chain(st["lanes"][0]["instances"].as_array()?)
            .collect();
        (all.len() == 3 && all.iter().all(|i| i["state"] == "healthy")).then_some(())
    });
    env.finish();
}

#[test]
fn switch_and_proxy_add_the_lane_header() {
    let env = TestEnv::new("proxy", 21);
    baseline_and_lane(&env, "");
    let router = env.router();
    env.ok(&["switch", "feature-x"]);
    assert_eq!(env.status()["active_lane"], "feature-x");

    let listen: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let proxy = env.spawn_in(&env.root, &["proxy", "--listen", &listen.to_string()], &[]);
    let target = format!("http://a.demo.localhost:{}/", router.port());
    let host = format!("a.demo.localhost:{}", router.port());
    let via_proxy = || common::try_http_get(listen, &host, &target, &[]).ok();
    let reply = env.wait_for("the proxy to answer", Duration::from_secs(15), via_proxy);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.served_by(), ["demo.a@baseline", "demo.b@feature-x"]);

    // Without the proxy the same request stays in baseline.
    let direct = common::http_get(router, &host, "/", &[]);
    assert_eq!(direct.served_by(), ["demo.a@baseline", "demo.b@baseline"]);

    // The proxy follows `lane switch` live.
    env.ok(&["switch", "baseline"]);
    env.wait_for(
        "the proxy to follow the switch",
        Duration::from_secs(10),
        || {
            let r = via_proxy()?;
            (r.served_by() == ["demo.a@baseline", "demo.b@baseline"]).then_some(())
        },
    );
    drop(proxy);
    env.finish();
}
