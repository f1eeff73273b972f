//! Data bindings reach a lane's processes as rewritten addresses (the local backend injects what
//! `lane_api::data_env` says), and baseline's processes as written.

mod common;

use common::{TestEnv, sample_manifest};

/// The environment of a running process, as (name, value) pairs.
fn environ(pid: u32) -> Vec<(String, String)> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("/proc/<pid>/environ");
    raw.split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

fn var(env: &[(String, String)], name: &str) -> Option<String> {
    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// Bindings whose lane names derive from the lane id alone (nothing to provision). Kafka topics are
/// provisioned now: their variables are checked in `data_kafka.rs`, against a real broker.
const BINDINGS: &str = r#"
[data.sessions]
kind = "redis"
url = "redis://127.0.0.1:1/0"
env = "SESSIONS_URL"
prefix_env = "SESSIONS_PREFIX"

[data.config]
kind = "apollo"
url = "APOLLO_URL"
env = "APOLLO_PORTAL"
app = "cart"
"#;

/// The Apollo Open API double the `config` binding's cluster is made on (the only binding here
/// whose copy is provisioned), with the token `APOLLO_OPENAPI_TOKEN` passes.
fn apollo() -> lane_tests::apollo::ApolloDouble {
    lane_tests::apollo::ApolloDouble::start(lane_tests::apollo::Options {
        tokens: [("data-env-token".to_owned(), vec!["cart".to_owned()])].into(),
        apps: vec!["cart".into()],
        ..Default::default()
    })
    .expect("the Apollo double starts")
}

const TOKEN: (&str, &str) = ("APOLLO_OPENAPI_TOKEN", "data-env-token");

#[test]
fn lane_processes_get_their_own_addresses_and_baseline_keeps_its_own() {
    let env = TestEnv::new("data-env", 135);
    let apollo = apollo();
    let manifest = format!(
        "{}{}",
        sample_manifest(&env.bin, "b", None, ""),
        BINDINGS.replace("APOLLO_URL", &apollo.url())
    );
    let repo = env.repo("b", &manifest);
    let ws = env.root.join("repos").join("lane-workspace.toml");
    std::fs::write(&ws, "[[service]]\npath = \"b\"\n").unwrap();
    env.ok(&["baseline", "up", "--file", ws.to_str().unwrap()]);
    env.branch(&repo, "feature");
    let out = env.run_in(&repo, &["deploy", "--lane", "feat-a"], &[TOKEN]);
    assert_eq!(out.code, 0, "{out}");
    assert!(apollo.has_cluster("DEV", "cart", "lane-feat-a"));

    let pid_of = |lane: &str| {
        env.instance(lane, "demo.b").expect("instance")["placement"]["pid"]
            .as_u64()
            .expect("a pid") as u32
    };
    let base = environ(pid_of("baseline"));
    assert_eq!(
        var(&base, "SESSIONS_URL").as_deref(),
        Some("redis://127.0.0.1:1/0")
    );
    assert_eq!(var(&base, "SESSIONS_PREFIX").as_deref(), Some(""));
    assert_eq!(var(&base, "APOLLO_CLUSTER").as_deref(), Some("default"));

    let lane = environ(pid_of("feat-a"));
    assert_eq!(
        var(&lane, "SESSIONS_URL").as_deref(),
        Some("redis://127.0.0.1:1/0")
    );
    assert_eq!(
        var(&lane, "SESSIONS_PREFIX").as_deref(),
        Some("lane:feat-a:")
    );
    assert_eq!(var(&lane, "APOLLO_CLUSTER").as_deref(), Some("lane-feat-a"));
    env.finish();
}

#[test]
fn an_unreachable_data_server_fails_the_deploy_and_leaves_nothing() {
    let env = TestEnv::new("data-unreachable", 138);
    let manifest = format!(
        "{}\n[data.orders]\nkind = \"mysql\"\nurl = \"mysql://app:secret@127.0.0.1:1/orders\"\n\
         env = \"ORDERS_DSN\"\n",
        sample_manifest(&env.bin, "b", None, "")
    );
    let repo = env.repo("b", &manifest);
    let out = env.run_in(&repo, &["deploy", "--lane", "feat-a"], &[]);
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains(
            "data binding `orders`: cannot reach MySQL at mysql://app:***@127.0.0.1:1/orders"
        ),
        "{out}"
    );
    assert!(
        !out.stderr.contains("secret"),
        "no password in messages: {out}"
    );
    assert!(
        env.lane("feat-a").is_none(),
        "the lane the deploy created is gone again"
    );
    assert!(env.instance("feat-a", "demo.b").is_none());
    env.finish();
}

#[test]
fn a_bad_binding_is_refused_with_its_position() {
    let env = TestEnv::new("data-bad-binding", 136);
    let manifest = format!(
        "{}\n[data.orders]\nkind = \"mysql\"\nurl = \"mysql://h/o;DROP DATABASE x\"\nenv = \"DSN\"\n",
        sample_manifest(&env.bin, "b", None, "")
    );
    let repo = env.repo("b", &manifest);
    let out = env.run_in(&repo, &["deploy", "--lane", "feat-a"], &[]);
    assert_eq!(out.code, 2, "invalid input:\n{out}");
    assert!(
        out.stderr.contains("lane.toml:")
            && out
                .stderr
                .contains("data.orders: url: the database: `o;DROP DATABASE x`"),
        "{out}"
    );
    assert!(env.lane("feat-a").is_none(), "nothing was created");
    env.finish();
}
