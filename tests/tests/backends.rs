//! Choosing a backend: `[backend] kind` in lane.toml or `--backend`. A backend this build does not
//! have is a clear error that names where it was chosen, and a cluster that cannot be reached one
//! that names the server; nothing is started for either: no agent, no build, no service process. The standalone `lane router` follows the local agent.

mod common;

use std::time::Duration;

use common::{TestEnv, http_get, sample_manifest};

fn assert_nothing_started(env: &TestEnv) {
    assert!(
        env.agent_pid().is_none(),
        "no agent was started ({} has agent.json)",
        env.home.display()
    );
    assert!(
        env.processes().is_empty(),
        "nothing runs: {:?}",
        env.processes()
    );
    assert!(
        !env.home.join("state.json").exists(),
        "no local state was written"
    );
}

#[test]
fn an_unreachable_cluster_is_a_clear_error_and_starts_nothing() {
    let env = TestEnv::new("backend-kind", 70);
    let manifest = sample_manifest(&env.bin, "b", None, "")
        + "\n[backend]\nkind = \"kubernetes\"\n[image]\nbuild = \"echo built > image-built.txt && echo img:1\"\n";
    let repo = env.repo("b", &manifest);
    // A kubeconfig naming a server nobody listens on (port 1 on loopback).
    let kubeconfig = env.root.join("unreachable.kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n\
         users:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    \
         user: u\ncurrent-context: x\n",
    )
    .unwrap();
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    for args in [
        &["deploy", "--lane", "feature-x"][..],
        &["status"],
        &["ls"],
        &["create", "feature-x"],
    ] {
        let out = env.run_in(&repo, args, &[("KUBECONFIG", &kubeconfig)]);
        assert_eq!(out.code, 7, "`lane {}`: {out}", args.join(" "));
        assert!(
            out.stderr
                .contains("cannot reach the Kubernetes API server https://127.0.0.1:1"),
            "`lane {}`: {out}",
            args.join(" ")
        );
    }
    assert!(
        !repo.join("image-built.txt").exists(),
        "no image is built when the cluster cannot be reached"
    );
    // A subdirectory of the service chooses by the same lane.toml.
    let sub = repo.join("src");
    std::fs::create_dir_all(&sub).unwrap();
    let out = env.run_in(&sub, &["ls"], &[("KUBECONFIG", &kubeconfig)]);
    assert_eq!(out.code, 7, "{out}");
    assert_nothing_started(&env);

    // The flag wins over lane.toml, both ways.
    let out = env.run_in(
        &repo,
        &["ls", "--backend", "consul"],
        &[("CONSUL_HTTP_ADDR", "127.0.0.1:1")],
    );
    assert_eq!(out.code, 7, "{out}");
    assert!(
        out.stderr
            .contains("cannot reach Consul at http://127.0.0.1:1 (CONSUL_HTTP_ADDR)"),
        "{out}"
    );
    let out = env.run_in(&env.root, &["ls", "--backend", "nomad"], &[]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr
            .contains("`nomad` is not one of local, consul, kubernetes"),
        "{out}"
    );
    assert_nothing_started(&env);
    env.ok_in(&repo, &["ls", "--backend", "local"]);
    assert!(
        env.agent_pid().is_some(),
        "the local backend starts its agent"
    );
    env.finish();
}

#[test]
fn a_broken_lane_toml_is_reported_before_any_backend_is_chosen() {
    let env = TestEnv::new("backend-broken", 71);
    let repo = env.repo(
        "b",
        "app = \"demo\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n[backend]\nkind = 7\n",
    );
    let out = env.run_in(&repo, &["ls"], &[]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("lane.toml:6:8"), "{out}");
    assert_nothing_started(&env);
    env.finish();
}

#[test]
fn the_standalone_router_refuses_a_lane_header_that_is_no_header_name() {
    let env = TestEnv::new("router-bad-header", 74);
    let out = env.run_in(
        &env.root,
        &["router", "--listen", "127.0.0.1:0"],
        &[("LANE_HEADER", "not a header")],
    );
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr
            .contains("--lane-header / LANE_HEADER `not a header` is not a header name"),
        "{out}"
    );
    assert!(env.agent_pid().is_none(), "nothing was started");
    env.finish();
}

#[test]
fn the_standalone_router_refuses_an_unknown_registry_and_a_bad_consul_prefix() {
    let env = TestEnv::new("router-bad-registry", 150);
    let out = env.run_in(
        &env.root,
        &["router", "--listen", "127.0.0.1:0", "--registry", "nomad"],
        &[],
    );
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr
            .contains("--registry `nomad` is not one of local, consul"),
        "{out}"
    );
    let out = env.run_in(
        &env.root,
        &[
            "router",
            "--listen",
            "127.0.0.1:0",
            "--registry",
            "consul",
            "--prefix",
            "Gaia;drop",
        ],
        &[("CONSUL_HTTP_ADDR", "127.0.0.1:1")],
    );
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains(
            "--prefix `Gaia;drop` is not a Consul name prefix (lowercase letters, digits and `-`)"
        ),
        "{out}"
    );
    assert!(env.agent_pid().is_none(), "nothing was started");
    env.finish();
}

#[test]
fn the_standalone_router_follows_the_agent_and_says_when_it_cannot() {
    let env = TestEnv::new("router-follows", 72);
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    // No agent yet: the router says so and serves nothing.
    let router = env.spawn_in(
        &env.root,
        &["router", "--listen", &listen],
        &[("LANE_HEADER", "X-Team-Lane")],
    );
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    env.wait_for(
        "the router to say it cannot read",
        Duration::from_secs(10),
        || {
            let err = std::fs::read_to_string(env.root.join("cmd1.err")).ok()?;
            err.contains("cannot read the lanes").then_some(())
        },
    );
    assert!(env.agent_pid().is_none(), "the router starts no agent");

    // Lanes made after it started reach it through the agent's change feed.
    let repo = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    env.branch(&repo, "feature-x-branch");
    env.ok_in(&repo, &["deploy", "--lane", "feature-x"]);
    let served = env.wait_for(
        "the router to route the lane",
        Duration::from_secs(10),
        || {
            let reply = common::try_http_get(
                addr,
                "b.demo.localhost",
                "/",
                &[("x-team-lane", "feature-x")],
            )
            .ok()?;
            let served = reply.served_by();
            (served.first()? == "demo.b@feature-x").then_some(served)
        },
    );
    assert_eq!(served, ["demo.b@feature-x"]);
    // It reads the header LANE_HEADER names, not x-lane.
    let reply = http_get(addr, "b.demo.localhost", "/", &[("x-lane", "feature-x")]);
    assert_ne!(
        reply.served_by().first().map(String::as_str),
        Some("demo.b@feature-x")
    );
    let err = std::fs::read_to_string(env.root.join("cmd1.err")).unwrap();
    assert!(err.contains("lane header `x-team-lane`"), "{err}");
    assert!(err.contains("following the lane agent again"), "{err}");
    let out = router.kill9();
    assert_eq!(out.code, -1, "{out}");
    env.finish();
}
