//! Redis key-prefix bindings through the real binary, against real Redis: the deploy records the
//! lane's prefix, `lane data ls` shows it with its key count and an approximate size, and `lane rm`
//! deletes exactly the lane's keys; a `lane data import` SIGKILLed while it stages leaves the
//! lane's keys exactly as they were, and the next import replaces them and leaves no staging keys.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestEnv, sample_manifest};
use lane_data::redis::{Redis, Reply};

fn redis_url() -> String {
    common::services::start("redis").var("LANE_TEST_REDIS_URL")
}

/// A connection with database `index` selected and emptied.
fn fresh(rt: &tokio::runtime::Runtime, url: &str, index: u32) -> Redis {
    let mut r = rt.block_on(Redis::connect(url)).unwrap();
    rt.block_on(r.cmd(&[b"SELECT", index.to_string().as_bytes()]))
        .unwrap();
    rt.block_on(r.cmd(&[b"FLUSHDB"])).unwrap();
    r
}

/// Sets `pairs` in the selected database, in pipelines of 1000.
fn set_all(rt: &tokio::runtime::Runtime, r: &mut Redis, pairs: &[(String, String)]) {
    for chunk in pairs.chunks(1000) {
        let cmds: Vec<Vec<&[u8]>> = chunk
            .iter()
            .map(|(k, v)| vec![&b"SET"[..], k.as_bytes(), v.as_bytes()])
            .collect();
        for reply in rt.block_on(r.pipeline(&cmds)).unwrap() {
            assert_eq!(reply, Reply::Status("OK".into()));
        }
    }
}

/// The keys of the selected database matching `pattern`, in one full `SCAN`.
fn scan(rt: &tokio::runtime::Runtime, r: &mut Redis, pattern: &str) -> Vec<Vec<u8>> {
    let mut cursor = b"0".to_vec();
    let mut out = Vec::new();
    loop {
        let reply = rt
            .block_on(r.cmd(&[
                b"SCAN",
                &cursor,
                b"MATCH",
                pattern.as_bytes(),
                b"COUNT",
                b"5000",
            ]))
            .unwrap();
        let Reply::Array(Some(parts)) = reply else {
            panic!("SCAN: {reply:?}")
        };
        let [Reply::Bulk(Some(next)), Reply::Array(Some(keys))] = parts.as_slice() else {
            panic!("SCAN: {parts:?}")
        };
        out.extend(keys.iter().filter_map(|k| match k {
            Reply::Bulk(Some(k)) => Some(k.clone()),
            _ => None,
        }));
        if next == b"0" {
            return out;
        }
        cursor = next.clone();
    }
}

/// Every key starting with `prefix` (without it), with its value and whether it has a TTL.
fn under(
    rt: &tokio::runtime::Runtime,
    r: &mut Redis,
    prefix: &str,
) -> BTreeMap<String, (String, bool)> {
    let keys = scan(rt, r, &format!("{prefix}*"));
    let mut out = BTreeMap::new();
    for chunk in keys.chunks(1000) {
        let cmds: Vec<Vec<&[u8]>> = chunk
            .iter()
            .flat_map(|k| [vec![&b"GET"[..], k], vec![&b"PTTL"[..], k]])
            .collect();
        let replies = rt.block_on(r.pipeline(&cmds)).unwrap();
        for (k, pair) in chunk.iter().zip(replies.chunks(2)) {
            let [Reply::Bulk(Some(v)), Reply::Int(ttl)] = pair else {
                panic!("GET/PTTL {}: {pair:?}", String::from_utf8_lossy(k))
            };
            let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.insert(name, (String::from_utf8_lossy(v).into_owned(), *ttl > 0));
        }
    }
    out
}

/// The row of `binding` in lane `lane` of `lane data ls --json`.
fn row(ls: &serde_json::Value, lane: &str, binding: &str) -> serde_json::Value {
    ls.as_array()
        .expect("an array")
        .iter()
        .find(|r| r["lane"] == lane && r["binding"] == binding)
        .unwrap_or_else(|| panic!("{lane}/{binding} in {ls:#}"))
        .clone()
}

/// The key count and approximate bytes of a key-prefix row's size
/// (`<n> keys, ~<b> bytes (approximate)`).
fn size(row: &serde_json::Value) -> (u64, u64) {
    let s = row["size"].as_str().unwrap_or_else(|| panic!("{row:#}"));
    let rest = s
        .strip_suffix(" bytes (approximate)")
        .unwrap_or_else(|| panic!("{s}"));
    let (keys, bytes) = rest.split_once(" keys, ~").unwrap_or_else(|| panic!("{s}"));
    (keys.parse().unwrap(), bytes.parse().unwrap())
}

fn environ(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap()).into_owned()
}

#[test]
fn data_ls_shows_a_lanes_key_prefix_binding_with_its_keys() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = redis_url();
    let (prefix_db, base_index, first, last) = (22u32, 23u32, 24u32, 25u32);
    let mut r = fresh(&rt, &url, prefix_db);
    for i in base_index..=last {
        drop(fresh(&rt, &url, i));
    }

    let env = TestEnv::new("data-prefix-ls", 256);
    let bindings = format!(
        "\n[data.sessions]\nkind = \"redis\"\nurl = \"{url}/{prefix_db}\"\nenv = \"SESSIONS_URL\"\n\
         prefix_env = \"SESSIONS_PREFIX\"\n\
         [data.cache]\nkind = \"redis\"\nurl = \"{url}/{base_index}\"\nenv = \"CACHE_URL\"\n\
         pool = [{first}, {last}]\n"
    );
    let repo = env.repo(
        "b",
        &format!("{}{bindings}", sample_manifest(&env.bin, "b", None, "")),
    );
    env.branch(&repo, "feature");
    env.ok_in(&repo, &["deploy", "--lane", "feat-l"]);

    // The lane's process writes under the prefix it was given.
    let pid = env.instance("feat-l", "demo.b").expect("instance")["placement"]["pid"]
        .as_u64()
        .unwrap() as u32;
    let e = environ(pid);
    assert!(e.contains("SESSIONS_PREFIX=lane:feat-l:\0"), "{e}");

    let ls = env.ok_in(&repo, &["data", "ls", "--json"]).json();
    let s = row(&ls, "feat-l", "sessions");
    assert_eq!(s["kind"], "redis", "{ls:#}");
    assert_eq!(s["target"], "lane:feat-l:", "{ls:#}");
    assert_eq!(size(&s), (0, 0), "{ls:#}");
    assert!(s.get("quota").is_none(), "no quota applies: {ls:#}");
    let c = row(&ls, "feat-l", "cache");
    assert_eq!(c["quota"], format!("pool {first}..={last}"), "{ls:#}");
    assert_eq!(ls.as_array().unwrap().len(), 2, "{ls:#}");

    // 40 keys of the lane's, and keys beside them that are not: baseline's, a lane whose id
    // starts with this one's, and an import's staging of this lane.
    let value = "v".repeat(100);
    let mut pairs: Vec<(String, String)> = (0..40)
        .map(|i| (format!("lane:feat-l:s:{i}"), value.clone()))
        .collect();
    pairs.extend(
        [
            "cart:1",
            "lane:feat-lx:k",
            "lane:feat-l$imp",
            "lane:feat-l$imp:t:s:1",
        ]
        .map(|k| (k.to_owned(), "other".to_owned())),
    );
    set_all(&rt, &mut r, &pairs);

    let ls = env.ok_in(&repo, &["data", "ls", "--json"]).json();
    let (keys, bytes) = size(&row(&ls, "feat-l", "sessions"));
    assert_eq!(keys, 40, "{ls:#}");
    assert!(
        (40 * 100..40 * 1000).contains(&bytes),
        "about 40 values of 100 bytes: {ls:#}"
    );
    let text = env.ok_in(&repo, &["data", "ls"]).stdout;
    let line = text
        .lines()
        .find(|l| l.contains("sessions"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.starts_with("feat-l") && line.contains("lane:feat-l:") && line.contains("40 keys, ~"),
        "{text}"
    );

    // The lane's document records the prefix: listed from anywhere, without a size where no
    // lane.toml declares the binding (its server is unknown there).
    let ls = env.ok(&["data", "ls", "--json"]).json();
    let s = row(&ls, "feat-l", "sessions");
    assert_eq!(s["target"], "lane:feat-l:", "{ls:#}");
    assert!(s.get("size").is_none(), "{ls:#}");

    // The lane's teardown removes its keys; baseline's and the other lane's stay.
    env.ok_in(&repo, &["rm", "feat-l"]);
    let left: Vec<String> = scan(&rt, &mut r, "*")
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(left, ["cart:1", "lane:feat-lx:k"]);
    let ls = env.ok_in(&repo, &["data", "ls", "--json"]).json();
    assert_eq!(ls, serde_json::json!([]), "the lane is gone");

    rt.block_on(r.cmd(&[b"FLUSHDB"])).unwrap();
    env.finish();
}

#[test]
fn an_import_killed_while_it_stages_leaves_the_lanes_keys() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = redis_url();
    let db = 26u32;
    let mut r = fresh(&rt, &url, db);

    let env = TestEnv::new("data-prefix-kill", 257);
    let bindings = format!(
        "\n[data.sessions]\nkind = \"redis\"\nurl = \"{url}/{db}\"\nenv = \"SESSIONS_URL\"\n\
         prefix_env = \"SESSIONS_PREFIX\"\n"
    );
    let repo = env.repo(
        "b",
        &format!("{}{bindings}", sample_manifest(&env.bin, "b", None, "")),
    );
    env.branch(&repo, "feature");
    env.ok_in(&repo, &["deploy", "--lane", "feat-x"]);
    env.ok_in(&repo, &["deploy", "--lane", "feat-y"]);

    // feat-x: many keys (a file that takes a while to stage); feat-y: a few, some with a TTL;
    // baseline's beside them.
    const MANY: usize = 250_000;
    let pairs: Vec<(String, String)> = (0..MANY)
        .map(|i| (format!("lane:feat-x:k:{i}"), format!("x{i:>60}")))
        .chain((0..20).map(|i| (format!("lane:feat-y:y:{i}"), format!("y{i}"))))
        .chain([("cart:1".to_owned(), "baseline".to_owned())])
        .collect();
    set_all(&rt, &mut r, &pairs);
    for i in 0..5 {
        rt.block_on(r.cmd(&[
            b"PEXPIRE",
            format!("lane:feat-y:y:{i}").as_bytes(),
            b"3600000",
        ]))
        .unwrap();
    }
    let y_before = under(&rt, &mut r, "lane:feat-y:");
    assert_eq!(y_before.len(), 20);

    let file = env.root.join("x.lanedata");
    let file_s = file.to_str().unwrap();
    let out = env
        .ok_in(&repo, &["data", "export", "feat-x", "-o", file_s, "--json"])
        .json();
    assert_eq!(out["bindings"][0]["items"], MANY as u64, "{out:#}");

    // SIGKILL the import once it has marked its staging and staged keys under it.
    let import = env.spawn_in(&repo, &["data", "import", "feat-y", file_s], &[]);
    let marker = "lane:feat-y$imp";
    common::wait_for(
        "the import to stage keys",
        Duration::from_secs(120),
        &mut || {
            let Ok(Reply::Int(1)) = rt.block_on(r.cmd(&[b"EXISTS", marker.as_bytes()])) else {
                return None;
            };
            let reply = rt
                .block_on(r.cmd(&[
                    b"SCAN",
                    b"0",
                    b"MATCH",
                    b"lane:feat-y$imp:*",
                    b"COUNT",
                    b"20000",
                ]))
                .ok()?;
            let Reply::Array(Some(parts)) = reply else {
                return None;
            };
            matches!(parts.get(1), Some(Reply::Array(Some(k))) if !k.is_empty()).then_some(())
        },
    );
    let killed = import.kill9();
    assert_ne!(killed.code, 0, "{killed}");
    assert_eq!(
        rt.block_on(r.cmd(&[b"EXISTS", marker.as_bytes()])).unwrap(),
        Reply::Int(1),
        "killed before the swap (the swap deletes the marker)"
    );
    assert!(
        !scan(&rt, &mut r, "lane:feat-y$imp:*").is_empty(),
        "the kill left staged keys"
    );
    assert_eq!(
        under(&rt, &mut r, "lane:feat-y:"),
        y_before,
        "feat-y's keys are exactly as they were"
    );
    assert_eq!(
        rt.block_on(r.cmd(&[b"GET", b"cart:1"])).unwrap(),
        Reply::Bulk(Some(b"baseline".to_vec()))
    );
    // `lane data ls` counts the lane's keys, not the staged ones.
    let ls = env.ok_in(&repo, &["data", "ls", "--json"]).json();
    assert_eq!(size(&row(&ls, "feat-y", "sessions")).0, 20, "{ls:#}");

    // The next import deletes the leftovers, replaces the keys, and leaves no staging.
    let out = env
        .ok_in(&repo, &["data", "import", "feat-y", file_s, "--json"])
        .json();
    assert_eq!(out["bindings"][0]["items"], MANY as u64, "{out:#}");
    assert!(
        scan(&rt, &mut r, "lane:feat-y$imp*").is_empty(),
        "no staging keys or marker left"
    );
    let y_after = under(&rt, &mut r, "lane:feat-y:");
    assert_eq!(y_after.len(), MANY);
    assert_eq!(y_after, under(&rt, &mut r, "lane:feat-x:"));
    assert_eq!(
        rt.block_on(r.cmd(&[b"DBSIZE"])).unwrap(),
        Reply::Int(2 * MANY as i64 + 1),
        "feat-x's keys, feat-y's and baseline's; nothing else"
    );

    rt.block_on(r.cmd(&[b"FLUSHDB"])).unwrap();
    env.finish();
}
