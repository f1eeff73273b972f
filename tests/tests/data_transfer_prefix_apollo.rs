//! `lane data export | import` through the real binary for a Redis binding in key-prefix mode
//! (real Redis, database 15, with baseline keys beside the lanes') and an Apollo binding (the
//! Open API double): both are exported without being named, imported into another lane (whose
//! owned Apollo item keeps its own value), and baseline's keys are untouched.

mod common;

use std::collections::BTreeMap;

use common::{TestEnv, sample_manifest};
use lane_data::apollo::Apollo;
use lane_data::redis::{Redis, Reply};
use lane_tests::apollo::{APPLICATION, ApolloDouble, Options};

const DB: u32 = 15;
const TOKEN: (&str, &str) = ("CART_APOLLO_TOKEN", "transfer-prefix-apollo-token");

fn items(report: &serde_json::Value, binding: &str) -> u64 {
    report["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["binding"] == binding)
        .unwrap_or_else(|| panic!("{binding} in {report:#}"))["items"]
        .as_u64()
        .unwrap()
}

/// Every key of the database with its value (strings only here), sorted.
fn keys(rt: &tokio::runtime::Runtime, r: &mut Redis) -> BTreeMap<String, String> {
    let Reply::Array(Some(all)) = rt.block_on(r.cmd(&[b"KEYS", b"*"])).unwrap() else {
        panic!("KEYS")
    };
    let mut out = BTreeMap::new();
    for k in all {
        let Reply::Bulk(Some(k)) = k else { continue };
        if let Reply::Bulk(Some(v)) = rt.block_on(r.cmd(&[b"GET", &k])).unwrap() {
            out.insert(
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
    }
    out
}

#[test]
fn prefix_mode_and_apollo_move_between_lanes_through_the_cli() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let redis_url = common::services::start("redis").var("LANE_TEST_REDIS_URL");
    let mut r = rt.block_on(Redis::connect(&redis_url)).unwrap();
    rt.block_on(r.cmd(&[b"SELECT", DB.to_string().as_bytes()]))
        .unwrap();
    rt.block_on(r.cmd(&[b"FLUSHDB"])).unwrap();
    let apollo = ApolloDouble::start(Options {
        tokens: [(TOKEN.1.to_owned(), vec!["cart".to_owned()])].into(),
        apps: vec!["cart".into()],
        ..Default::default()
    })
    .expect("the Apollo double starts");

    let env = TestEnv::new("data-transfer-pa", 255);
    let bindings = format!(
        "\n[data.sessions]\nkind = \"redis\"\nurl = \"{redis_url}/{DB}\"\nenv = \"SESSIONS_URL\"\n\
         prefix_env = \"SESSIONS_PREFIX\"\n\
         [data.config]\nkind = \"apollo\"\nurl = \"{}\"\nenv = \"APOLLO_PORTAL\"\napp = \"cart\"\n\
         token_env = \"{}\"\nitems = {{ \"sessions.prefix\" = \"SESSIONS_PREFIX\" }}\n",
        apollo.url(),
        TOKEN.0
    );
    let repo = env.repo(
        "b",
        &format!("{}{bindings}", sample_manifest(&env.bin, "b", None, "")),
    );
    env.branch(&repo, "feature");
    for lane in ["feat-p", "feat-q"] {
        let out = env.run_in(&repo, &["deploy", "--lane", lane], &[TOKEN]);
        assert_eq!(out.code, 0, "{out}");
    }

    // Baseline's keys and each lane's.
    let set = |r: &mut Redis, k: &str, v: &str| {
        rt.block_on(r.cmd(&[b"SET", k.as_bytes(), v.as_bytes()]))
            .unwrap();
    };
    set(&mut r, "cart:1", "baseline");
    set(&mut r, "lane:feat-px:k", "not a lane of this test");
    for i in 0..50 {
        set(&mut r, &format!("lane:feat-p:s:{i}"), &format!("p{i}"));
    }
    set(&mut r, "lane:feat-q:only", "q");
    let client = Apollo::new(&apollo.url(), Some(TOKEN.1), TOKEN.0).unwrap();
    rt.block_on(client.put_item(
        "DEV",
        "cart",
        "lane-feat-p",
        APPLICATION,
        "greeting",
        "hello from p",
        "p's",
        "apollo",
    ))
    .unwrap();
    rt.block_on(client.publish("DEV", "cart", "lane-feat-p", APPLICATION, "t", "", "apollo"))
        .unwrap();

    let file = env.root.join("pa.lanedata");
    let file_s = file.to_str().unwrap();
    let out = env.run_in(
        &repo,
        &["data", "export", "feat-p", "-o", file_s, "--json"],
        &[TOKEN],
    );
    assert_eq!(out.code, 0, "{out}");
    let report = out.json();
    assert_eq!(items(&report, "sessions"), 50, "{report:#}");
    assert_eq!(items(&report, "config"), 1, "{report:#}");

    let out = env.run_in(
        &repo,
        &["data", "import", "feat-q", file_s, "--json"],
        &[TOKEN],
    );
    assert_eq!(out.code, 0, "{out}");
    let all = keys(&rt, &mut r);
    let under = |p: &str| -> BTreeMap<String, String> {
        all.iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(p)?.to_owned(), v.clone())))
            .collect()
    };
    assert_eq!(under("lane:feat-q:"), under("lane:feat-p:"));
    assert_eq!(under("lane:feat-q:").len(), 50);
    assert_eq!(all["cart:1"], "baseline");
    assert_eq!(all["lane:feat-px:k"], "not a lane of this test");
    assert_eq!(
        apollo.latest_release("DEV", "cart", "lane-feat-q", APPLICATION),
        Some(
            [
                ("greeting".to_owned(), "hello from p".to_owned()),
                ("sessions.prefix".to_owned(), "lane:feat-q:".to_owned()),
            ]
            .into()
        ),
        "the imported item, and q's own rewritten one"
    );

    // Without the token, the Apollo binding is a clear error naming the variable.
    let out = env.run_in(
        &repo,
        &["data", "export", "feat-p", "config", "-o", file_s],
        &[],
    );
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains(TOKEN.0), "{out}");

    rt.block_on(r.cmd(&[b"FLUSHDB"])).unwrap();
    env.finish();
}
