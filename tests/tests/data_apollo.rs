//! A lane's Apollo cluster, against the Apollo Open API test double (`lane_tests::apollo`):
//! `lane_data::apollo` creates `lane-<id>`, writes the lane's rewritten items and publishes them,
//! deletes the cluster on teardown (or empties it on a Portal without the delete), adopts a
//! cluster left by a crashed run, and fails clearly on a bad token, a token for another app, and
//! an unreachable Portal. End to end: `lane deploy` of a service with a Redis and an Apollo
//! binding gives the lane cluster `lane-<id>` whose item is the lane's Redis address (index
//! allocated in the same deploy), `lane data ls` shows it, `lane rm` deletes it.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};

use common::{TestEnv, sample_manifest};
use lane_core::LaneId;
use lane_core::data::{ApolloOptions, DataOptions, DataSpec};
use lane_data::DataError;
use lane_data::apollo::{self, Removal};
use lane_tests::apollo::{APPLICATION, ApolloDouble, Options};

const TOKEN: &str = "e16e5cd903fd0c97a116c873b448544b9d086de9";

fn double(delete_cluster: bool) -> ApolloDouble {
    ApolloDouble::start(Options {
        tokens: HashMap::from([
            (TOKEN.to_owned(), vec!["cart".to_owned()]),
            ("other-app-token".to_owned(), vec!["orders".to_owned()]),
        ]),
        apps: vec!["cart".into(), "orders".into()],
        users: vec!["apollo".into(), "lane-bot".into()],
        delete_cluster,
        ..Options::default()
    })
    .expect("the double starts")
}

fn spec(url: &str, token: Option<&str>) -> DataSpec {
    DataSpec {
        name: "config".into(),
        address: url.into(),
        env: "APOLLO_META".into(),
        options: DataOptions::Apollo(ApolloOptions {
            app: "cart".into(),
            cluster_env: "APOLLO_CLUSTER".into(),
            env: "DEV".into(),
            namespace: APPLICATION.into(),
            operator: "lane-bot".into(),
            token_env: "CART_APOLLO_TOKEN".into(),
            items: BTreeMap::new(),
            token: token.map(str::to_owned),
        }),
    }
}

fn items(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    items(pairs).into_iter().collect()
}

/// One raw HTTP/1.1 exchange: (status, body).
fn raw(url: &str, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = auth.map_or(String::new(), |t| format!("Authorization: {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json;charset=UTF-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

#[test]
fn the_double_answers_as_the_open_api_documents() {
    let d = double(true);
    let u = d.url();
    let clusters = "/openapi/v1/envs/DEV/apps/cart/clusters";
    assert_eq!(
        raw(&u, "GET", &format!("{clusters}/default"), None, "").0,
        401
    );
    assert_eq!(
        raw(&u, "GET", &format!("{clusters}/default"), Some("nope"), "").0,
        401
    );
    let (status, body) = raw(&u, "GET", &format!("{clusters}/default"), Some(TOKEN), "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"name\":\"default\""), "{body}");
    assert_eq!(
        raw(&u, "GET", &format!("{clusters}/missing"), Some(TOKEN), "").0,
        404
    );
    let create = |app: &str, name: &str, by: &str| {
        format!(r#"{{"name":"{name}","appId":"{app}","dataChangeCreatedBy":"{by}"}}"#)
    };
    let (status, body) = raw(
        &u,
        "POST",
        clusters,
        Some(TOKEN),
        &create("other", "x", "apollo"),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("AppId not equal"), "{body}");
    let (status, body) = raw(&u, "POST", clusters, Some(TOKEN), &create("cart", "x", ""));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("dataChangeCreatedBy"), "{body}");
    let (status, body) = raw(
        &u,
        "POST",
        clusters,
        Some(TOKEN),
        &create("cart", "x", "bob"),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("User bob doesn't exist!"), "{body}");
    assert_eq!(
        raw(
            &u,
            "POST",
            clusters,
            Some(TOKEN),
            &create("cart", "a b", "apollo")
        )
        .0,
        400
    );
    assert_eq!(
        raw(
            &u,
            "POST",
            clusters,
            Some(TOKEN),
            &create("cart", "x", "apollo")
        )
        .0,
        200
    );
    let (status, body) = raw(
        &u,
        "POST",
        clusters,
        Some(TOKEN),
        &create("cart", "x", "apollo"),
    );
    assert_eq!(
        (status, body.contains("cluster already exist.")),
        (400, true)
    );
    // A token may only touch the apps it was granted.
    let orders = "/openapi/v1/envs/DEV/apps/orders/clusters";
    assert_eq!(
        raw(
            &u,
            "POST",
            orders,
            Some(TOKEN),
            &create("orders", "x", "apollo")
        )
        .0,
        403
    );
    // Items: create, a second create of the key, update without the key, delete.
    let items = format!("{clusters}/x/namespaces/application/items");
    let item = r#"{"key":"k","value":"v","dataChangeCreatedBy":"apollo"}"#;
    assert_eq!(raw(&u, "POST", &items, Some(TOKEN), item).0, 200);
    assert_eq!(raw(&u, "POST", &items, Some(TOKEN), item).0, 400);
    let put = r#"{"key":"j","value":"v","dataChangeLastModifiedBy":"apollo"}"#;
    assert_eq!(
        raw(&u, "PUT", &format!("{items}/j"), Some(TOKEN), put).0,
        404
    );
    assert_eq!(
        raw(&u, "PUT", &format!("{items}/k"), Some(TOKEN), put).0,
        400
    );
    assert_eq!(
        raw(&u, "DELETE", &format!("{items}/k"), Some(TOKEN), "").0,
        400,
        "no operator"
    );
    assert_eq!(
        raw(
            &u,
            "DELETE",
            &format!("{items}/k?operator=apollo"),
            Some(TOKEN),
            ""
        )
        .0,
        200
    );
    assert_eq!(
        raw(
            &u,
            "DELETE",
            &format!("{items}/k?operator=apollo"),
            Some(TOKEN),
            ""
        )
        .0,
        400,
        "item not exists"
    );
    let release = format!("{clusters}/x/namespaces/application/releases");
    assert_eq!(
        raw(
            &u,
            "POST",
            &release,
            Some(TOKEN),
            r#"{"releasedBy":"apollo"}"#
        )
        .0,
        400
    );
    assert_eq!(
        raw(
            &u,
            "DELETE",
            &format!("{clusters}/default?operator=apollo"),
            Some(TOKEN),
            ""
        )
        .0,
        400,
        "can not delete default cluster"
    );
    assert_eq!(
        raw(
            &u,
            "GET",
            "/openapi/v1/envs/NOPE/apps/cart/clusters/default",
            Some(TOKEN),
            ""
        )
        .0,
        400
    );
    // An older Portal: no cluster delete in the Open API.
    let old = double(false);
    assert_eq!(
        raw(
            &old.url(),
            "DELETE",
            &format!("{clusters}/default?operator=apollo"),
            Some(TOKEN),
            ""
        )
        .0,
        405
    );
}

#[test]
fn provision_creates_writes_and_publishes_and_remove_deletes_only_the_lanes_cluster() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d = double(true);
    let s = spec(&d.url(), Some(TOKEN));
    let lane: LaneId = "feat-a".parse().unwrap();
    let want = [
        ("db.url", "mysql://h/orders__lane_feat_a"),
        ("redis.url", "redis://h/4"),
    ];
    let p = rt
        .block_on(apollo::provision(&s, &lane, &items(&want)))
        .unwrap();
    assert_eq!(
        (p.cluster.as_str(), p.created, p.items),
        ("lane-feat-a", true, 2)
    );
    assert_eq!(
        d.items("DEV", "cart", "lane-feat-a", APPLICATION),
        Some(map(&want))
    );
    assert_eq!(
        d.latest_release("DEV", "cart", "lane-feat-a", APPLICATION),
        Some(map(&want)),
        "published"
    );
    assert_eq!(
        d.items("DEV", "cart", "default", APPLICATION),
        Some(BTreeMap::new()),
        "baseline's cluster untouched"
    );
    assert_eq!(
        rt.block_on(apollo::item_count(&s, "lane-feat-a")).unwrap(),
        2
    );
    // Provisioning again (a second deploy into the lane) keeps the cluster and its items.
    let p = rt
        .block_on(apollo::provision(&s, &lane, &items(&want)))
        .unwrap();
    assert!(!p.created);

    // The guard: never anything but lane-<id>.
    for bad in ["default", "lane-feat-b"] {
        let err = rt.block_on(apollo::remove(&s, &lane, bad)).unwrap_err();
        assert!(matches!(err, DataError::Guard(_)), "{bad}: {err}");
    }
    assert_eq!(
        rt.block_on(apollo::remove(&s, &lane, "lane-feat-a"))
            .unwrap(),
        Removal::Deleted
    );
    assert!(!d.has_cluster("DEV", "cart", "lane-feat-a"));
    assert!(d.has_cluster("DEV", "cart", "default"));
    assert_eq!(
        rt.block_on(apollo::remove(&s, &lane, "lane-feat-a"))
            .unwrap(),
        Removal::Absent,
        "twice is harmless"
    );
    assert!(
        d.requests().iter().any(|r| r.starts_with(
            "DELETE /openapi/v1/envs/DEV/apps/cart/clusters/lane-feat-a?operator=lane-bot"
        )),
        "{:?}",
        d.requests()
    );
}

#[test]
fn a_cluster_left_by_a_crashed_run_is_adopted() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d = double(true);
    d.seed_cluster(
        "DEV",
        "cart",
        "lane-feat-c",
        &[("db.url", "stale"), ("feature.flag", "on")],
    );
    let s = spec(&d.url(), Some(TOKEN));
    let lane: LaneId = "feat-c".parse().unwrap();
    let p = rt
        .block_on(apollo::provision(&s, &lane, &items(&[("db.url", "fresh")])))
        .unwrap();
    assert!(!p.created, "adopted, not created");
    assert_eq!(
        d.latest_release("DEV", "cart", "lane-feat-c", APPLICATION),
        Some(map(&[("db.url", "fresh"), ("feature.flag", "on")])),
        "its own item overwritten, the others kept"
    );
}

#[test]
fn a_portal_without_cluster_delete_gets_the_cluster_emptied() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d = double(false);
    let s = spec(&d.url(), Some(TOKEN));
    let lane: LaneId = "feat-o".parse().unwrap();
    rt.block_on(apollo::provision(
        &s,
        &lane,
        &items(&[("a", "1"), ("b", "2")]),
    ))
    .unwrap();
    assert_eq!(
        rt.block_on(apollo::remove(&s, &lane, "lane-feat-o"))
            .unwrap(),
        Removal::Emptied { items: 2 }
    );
    assert_eq!(
        d.items("DEV", "cart", "lane-feat-o", APPLICATION),
        Some(BTreeMap::new())
    );
    assert_eq!(
        d.latest_release("DEV", "cart", "lane-feat-o", APPLICATION),
        Some(BTreeMap::new()),
        "published empty: nothing of the lane stays in effect"
    );
}

#[test]
fn bad_tokens_and_an_unreachable_portal_are_clear_errors() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d = double(true);
    let lane: LaneId = "feat-e".parse().unwrap();
    let none = rt
        .block_on(apollo::provision(&spec(&d.url(), None), &lane, &[]))
        .unwrap_err()
        .to_string();
    assert!(
        none.contains("no Apollo Open API token") && none.contains("CART_APOLLO_TOKEN"),
        "{none}"
    );
    let bad = rt
        .block_on(apollo::provision(
            &spec(&d.url(), Some("wrong")),
            &lane,
            &[],
        ))
        .unwrap_err();
    assert!(matches!(bad, DataError::Auth { .. }), "{bad}");
    let bad = bad.to_string();
    assert!(
        bad.contains("401 Unauthorized") && bad.contains("CART_APOLLO_TOKEN"),
        "{bad}"
    );
    assert!(!bad.contains("wrong"), "the token is not echoed: {bad}");
    let forbidden = rt
        .block_on(apollo::provision(
            &spec(&d.url(), Some("other-app-token")),
            &lane,
            &[],
        ))
        .unwrap_err()
        .to_string();
    assert!(
        forbidden.contains("403 Forbidden") && forbidden.contains("may not manage app `cart`"),
        "{forbidden}"
    );
    assert!(d.clusters("DEV", "cart") == ["default"], "nothing made");
    let port = common::free_port();
    let down = rt
        .block_on(apollo::provision(
            &spec(&format!("http://127.0.0.1:{port}"), Some(TOKEN)),
            &lane,
            &[],
        ))
        .unwrap_err();
    assert!(matches!(down, DataError::Unreachable { .. }), "{down}");
    assert!(
        down.to_string()
            .starts_with(&format!("cannot reach Apollo at http://127.0.0.1:{port}")),
        "{down}"
    );
}

/// The Redis test server's address, started when needed (failing the test when it cannot be).
fn redis_url() -> String {
    common::services::start("redis").var("LANE_TEST_REDIS_URL")
}

fn environ(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap()).into_owned()
}

#[test]
fn deploy_gives_the_lane_its_apollo_cluster_and_rm_deletes_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let redis = redis_url();
    let (base_index, first, last) = (56u32, 57u32, 59u32);
    let mut r = rt
        .block_on(lane_data::redis::Redis::connect(&redis))
        .unwrap();
    for i in base_index..=last {
        rt.block_on(r.cmd(&[b"SELECT", i.to_string().as_bytes()]))
            .unwrap();
        rt.block_on(r.cmd(&[b"FLUSHDB"])).unwrap();
    }
    let d = double(true);
    let env = TestEnv::new("data-apollo", 220);
    let bindings = format!(
        "\n[data.cache]\nkind = \"redis\"\nurl = \"{redis}/{base_index}\"\nenv = \"REDIS_URL\"\n\
         pool = [{first}, {last}]\n\
         [data.config]\nkind = \"apollo\"\nurl = \"{}\"\nenv = \"APOLLO_META\"\napp = \"cart\"\n\
         operator = \"lane-bot\"\ntoken_env = \"CART_APOLLO_TOKEN\"\n\
         items = {{ \"spring.redis.url\" = \"REDIS_URL\" }}\n",
        d.url()
    );
    let repo = env.repo(
        "b",
        &format!("{}{bindings}", sample_manifest(&env.bin, "b", None, "")),
    );
    env.branch(&repo, "feature");

    // Without the token: a clear error naming the variable, and no lane left behind.
    let out = env.run_in(&repo, &["deploy", "--lane", "feat-p"], &[]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("data binding `config`") && out.stderr.contains("CART_APOLLO_TOKEN"),
        "{}",
        out.stderr
    );
    assert!(env.lane("feat-p").is_none(), "the lane it created is gone");
    assert!(!d.has_cluster("DEV", "cart", "lane-feat-p"));

    let token = [("CART_APOLLO_TOKEN", TOKEN)];
    let out = env.run_in(&repo, &["deploy", "--lane", "feat-p"], &token);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let index = env.lane("feat-p").expect("the lane")["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "redis")
        .expect("the redis record")["target"]
        .as_str()
        .unwrap()
        .to_owned();
    let lane_redis = format!("{redis}/{index}");
    assert_eq!(
        d.latest_release("DEV", "cart", "lane-feat-p", APPLICATION),
        Some(map(&[("spring.redis.url", lane_redis.as_str())])),
        "the lane's cluster holds the lane's Redis address, published"
    );
    let pid = env.instance("feat-p", "demo.b").expect("instance")["placement"]["pid"]
        .as_u64()
        .unwrap() as u32;
    let e = environ(pid);
    assert!(e.contains("APOLLO_CLUSTER=lane-feat-p\0"), "{e}");
    assert!(e.contains(&format!("REDIS_URL={lane_redis}\0")), "{e}");

    let ls = env.run_in(&repo, &["data", "ls", "--json"], &token).json();
    let row = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["binding"] == "config")
        .unwrap_or_else(|| panic!("{ls:#}"))
        .clone();
    assert_eq!(row["kind"], "apollo");
    assert_eq!(row["target"], "lane-feat-p");
    assert_eq!(row["size"], "1 items", "{ls:#}");

    let plan = env
        .run_in(&repo, &["rm", "feat-p", "--dry-run"], &token)
        .stdout;
    assert!(
        plan.contains("config: delete Apollo cluster `lane-feat-p` of app `cart` in DEV"),
        "{plan}"
    );
    assert!(d.has_cluster("DEV", "cart", "lane-feat-p"));
    // `lane rm` from anywhere: the agent has the binding (and its token) recorded.
    env.ok(&["rm", "feat-p"]);
    assert!(!d.has_cluster("DEV", "cart", "lane-feat-p"), "deleted");
    assert!(d.has_cluster("DEV", "cart", "default"), "baseline's kept");
    env.finish();
}
