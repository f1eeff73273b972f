//! Export and import of Redis bindings in key-prefix mode against the real Redis (database 14,
//! shared with "baseline" keys as a one-database server is): a lane's keys exported and imported
//! into another lane are identical (payloads and time to live, without the prefix); an import
//! stopped before the swap (its future dropped, as a killed process would) leaves the lane's keys
//! as they were, and the next import or the teardown removes its staging; keys outside the lane's
//! prefix are never touched; the wrong kind, binding or prefix is a clear error. A file moves
//! between the database mode and the key-prefix mode (databases 16–20).

mod common;

use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use lane_core::LaneId;
use lane_core::data::{self, DataSpec};
use lane_core::manifest::Manifest;
use lane_data::DataError;
use lane_data::redis::{Redis, Reply};
use lane_data::teardown;
use lane_data::transfer::{self, Cancel, Target};
use tokio::io::{AsyncRead, ReadBuf};

/// The database the tests of this file share with their "baseline" keys.
const DB: u32 = 14;

fn specs() -> Vec<DataSpec> {
    let mut specs = Manifest::parse(
        Path::new("lane.toml"),
        &format!(
            "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n\
             [data.sessions]\nkind = \"redis\"\nurl = \"{}/{DB}\"\nenv = \"R\"\n\
             prefix_env = \"P\"\n\
             [data.orders]\nkind = \"mysql\"\nurl = \"mysql://u:p@127.0.0.1:1/orders\"\nenv = \"DSN\"\n",
            common::redis_url()
        ),
    )
    .unwrap()
    .data;
    // `sessions` first.
    specs.sort_by_key(|s| s.name != "sessions");
    specs
}

fn target(specs: &[DataSpec], lane: &LaneId) -> Vec<Target> {
    vec![Target {
        spec: specs[0].clone(),
        target: data::redis_prefix(lane),
    }]
}

async fn connect() -> Redis {
    let mut r = Redis::connect(common::redis_url()).await.unwrap();
    r.cmd(&[b"SELECT", DB.to_string().as_bytes()])
        .await
        .unwrap();
    r
}

/// Every key of the database with its DUMP payload and whether it has a time to live, sorted.
async fn all_keys(r: &mut Redis) -> Vec<(Vec<u8>, Vec<u8>, bool)> {
    let Reply::Array(Some(all)) = r.cmd(&[b"KEYS", b"*"]).await.unwrap() else {
        panic!("KEYS")
    };
    let mut out = Vec::new();
    for k in all {
        let Reply::Bulk(Some(k)) = k else { continue };
        let Reply::Bulk(Some(dump)) = r.cmd(&[b"DUMP", &k]).await.unwrap() else {
            continue;
        };
        let Reply::Int(ttl) = r.cmd(&[b"PTTL", &k]).await.unwrap() else {
            panic!("PTTL")
        };
        out.push((k, dump, ttl > 0));
    }
    out.sort();
    out
}

/// The keys starting with `prefix`, the prefix stripped.
async fn keys_under(r: &mut Redis, prefix: &str) -> Vec<(Vec<u8>, Vec<u8>, bool)> {
    all_keys(r)
        .await
        .into_iter()
        .filter(|(k, _, _)| k.starts_with(prefix.as_bytes()))
        .map(|(k, d, t)| (k[prefix.len()..].to_vec(), d, t))
        .collect()
}

/// The keys of the database outside the given prefixes (what a lane must never touch).
async fn outside(r: &mut Redis, prefixes: &[String]) -> Vec<(Vec<u8>, Vec<u8>, bool)> {
    all_keys(r)
        .await
        .into_iter()
        .filter(|(k, _, _)| !prefixes.iter().any(|p| k.starts_with(p.as_bytes())))
        .collect()
}

async fn write_keys(r: &mut Redis, prefix: &str, n: u32) {
    for i in 0..n {
        r.cmd(&[
            b"SET",
            format!("{prefix}s:{i}").as_bytes(),
            format!("v{i}").as_bytes(),
        ])
        .await
        .unwrap();
    }
    r.cmd(&[b"HSET", format!("{prefix}h").as_bytes(), b"f", b"\x00\xff"])
        .await
        .unwrap();
    r.cmd(&[b"RPUSH", format!("{prefix}l").as_bytes(), b"a", b"b"])
        .await
        .unwrap();
    r.cmd(&[
        b"SET",
        format!("{prefix}ttl").as_bytes(),
        b"x",
        b"EX",
        b"3600",
    ])
    .await
    .unwrap();
    // A name with glob characters, and the empty name (the key is the prefix itself).
    r.cmd(&[b"SET", format!("{prefix}*[?]").as_bytes(), b"glob"])
        .await
        .unwrap();
    r.cmd(&[b"SET", prefix.as_bytes(), b"empty name"])
        .await
        .unwrap();
}

use common::xfer::{export, import, no_progress};

/// A reader that gives the first `n` bytes of a file, then never answers again: an import
/// reading it has staged every frame before byte `n` and waits, as a process killed there would
/// have left it.
struct Stall {
    data: Vec<u8>,
    pos: usize,
}

impl AsyncRead for Stall {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos >= self.data.len() {
            return Poll::Pending;
        }
        let n = buf.remaining().min(self.data.len() - self.pos);
        let pos = self.pos;
        buf.put_slice(&self.data[pos..pos + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// The file without its end frame (the last one): `magic version (tag len payload crc)*`.
pub fn without_end(file: &[u8]) -> Vec<u8> {
    let mut at = 10;
    let mut last = at;
    while at < file.len() {
        last = at;
        let len = u32::from_be_bytes(file[at + 1..at + 5].try_into().unwrap()) as usize;
        at += 9 + len;
    }
    assert_eq!(file[last], transfer::format::TAG_END);
    file[..last].to_vec()
}

/// Starts an import of `file` that stops for good before its end frame, and drops it after the
/// staging (no cleanup runs: a killed process).
async fn killed_import(lane: &LaneId, targets: &[Target], file: &[u8]) {
    let stall = Stall {
        data: without_end(file),
        pos: 0,
    };
    let cancel = Cancel::new();
    let run = transfer::import(
        lane,
        targets,
        stall,
        None,
        file.len() as u64,
        &no_progress,
        &cancel,
    );
    let r = tokio::time::timeout(std::time::Duration::from_secs(2), run).await;
    assert!(r.is_err(), "the import should still wait: {r:?}");
}

async fn staged_left(r: &mut Redis, lane: &LaneId) -> usize {
    let root = transfer::redis::staging_root(lane);
    all_keys(r)
        .await
        .iter()
        .filter(|(k, _, _)| k.starts_with(root.as_bytes()))
        .count()
}

#[tokio::test]
async fn prefix_mode_export_import_keeps_keys_and_touches_nothing_else() {
    let specs = specs();
    let (a, b) = (common::lane("pfxa"), common::lane("pfxb"));
    let (ta, tb) = (target(&specs, &a), target(&specs, &b));
    let (pa, pb) = (data::redis_prefix(&a), data::redis_prefix(&b));
    let mut r = connect().await;
    // Baseline's keys around the lanes' (including names that look like a lane's).
    let base = common::unique("pfxbase");
    write_keys(&mut r, &format!("{base}:"), 3).await;
    for k in [
        format!("lane:{a}"),
        format!("lane:{a}x:k"),
        format!("lane:{b}-other:k"),
        format!("xlane:{b}:k"),
    ] {
        r.cmd(&[b"SET", k.as_bytes(), b"not the lane's"])
            .await
            .unwrap();
    }
    write_keys(&mut r, &pa, 20).await;
    write_keys(&mut r, &format!("{pb}old:"), 2).await;
    let lanes = [pa.clone(), pb.clone()];
    let baseline = outside(&mut r, &lanes).await;
    let b_before = keys_under(&mut r, &pb).await;

    let file = export(&a, &ta).await;
    // Killed before the swap: lane b's keys are as they were; the staging is left.
    killed_import(&b, &tb, &file).await;
    assert_eq!(keys_under(&mut r, &pb).await, b_before);
    assert!(staged_left(&mut r, &b).await > 20, "the kill left staging");
    // A cancelled import leaves them too (and removes its own staging).
    let cancel = Cancel::new();
    cancel.cancel();
    let e = transfer::import(
        &b,
        &tb,
        &file[..],
        None,
        file.len() as u64,
        &no_progress,
        &cancel,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, DataError::Cancelled), "{e}");
    assert_eq!(keys_under(&mut r, &pb).await, b_before);

    // The next import removes the leftovers and swaps: b holds exactly a's keys.
    let report = import(&b, &tb, &file, None).await.unwrap();
    assert_eq!(report.bindings[0].items, 25);
    assert_eq!(report.bindings[0].target, pb);
    assert_eq!(keys_under(&mut r, &pb).await, keys_under(&mut r, &pa).await);
    assert_eq!(staged_left(&mut r, &b).await, 0);
    assert_eq!(outside(&mut r, &lanes).await, baseline);

    // Importing into a lane with no keys yet, and importing a file with no keys (the lane's keys
    // are all replaced, by nothing).
    let c = common::lane("pfxc");
    let tc = target(&specs, &c);
    import(&c, &tc, &file, Some("sessions")).await.unwrap();
    let pc = data::redis_prefix(&c);
    assert_eq!(keys_under(&mut r, &pc).await, keys_under(&mut r, &pa).await);
    let empty_lane = common::lane("pfxe");
    let empty = export(&empty_lane, &target(&specs, &empty_lane)).await;
    import(&c, &tc, &empty, None).await.unwrap();
    assert!(keys_under(&mut r, &pc).await.is_empty());

    // Bad input: a binding the file does not hold, the wrong kind, another lane's prefix.
    let e = import(&b, &tb, &file, Some("nope")).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("the file holds no binding `nope` (it holds `sessions` (redis))"),
        "{e}"
    );
    let mut wrong_kind = specs[1].clone();
    wrong_kind.name = "sessions".into();
    let e = import(
        &b,
        &[Target {
            spec: wrong_kind,
            target: "orders__lane_x".into(),
        }],
        &file,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "binding `sessions` is redis in the file and mysql in the lane"
    );
    let mut other = tb.clone();
    other[0].target = pa.clone();
    let e = import(&b, &other, &file, None).await.unwrap_err();
    assert!(matches!(e, DataError::Guard(_)), "{e}");
    for bad in ["", "lane:", "x"] {
        other[0].target = bad.into();
        let e = transfer::export(&b, &other, Vec::new(), &no_progress, &Cancel::new())
            .await
            .unwrap_err();
        assert!(matches!(e, DataError::Guard(_)), "{bad}: {e}");
    }
    assert_eq!(keys_under(&mut r, &pb).await, keys_under(&mut r, &pa).await);

    // Teardown removes the lane's keys and a killed import's staging, nothing else.
    killed_import(&b, &tb, &file).await;
    assert!(staged_left(&mut r, &b).await > 0);
    for l in [&a, &b, &c] {
        let plan = teardown::plan(l, &specs[..1], &[]).unwrap();
        teardown::execute(&plan, &specs[..1]).await.unwrap();
    }
    assert_eq!(staged_left(&mut r, &b).await, 0);
    assert!(keys_under(&mut r, &pb).await.is_empty());
    assert!(keys_under(&mut r, &pa).await.is_empty());
    assert_eq!(outside(&mut r, &lanes).await, baseline);
    // Clean up this test's baseline keys.
    let mut del: Vec<Vec<u8>> = baseline.into_iter().map(|(k, _, _)| k).collect();
    del.retain(|k| {
        k.starts_with(base.as_bytes())
            || k.starts_with(format!("lane:{a}").as_bytes())
            || k.starts_with(format!("lane:{b}").as_bytes())
            || k.starts_with(format!("xlane:{b}").as_bytes())
    });
    let mut args: Vec<&[u8]> = vec![b"DEL"];
    args.extend(del.iter().map(Vec::as_slice));
    r.cmd(&args).await.unwrap();
}

/// The file is the same in both modes: a database-mode lane's keys import into a key-prefix lane
/// and back (pool 17..=19 of base 16, key-prefix mode in database 20: database 14 is the other
/// test's, which compares every key outside its lanes).
#[tokio::test]
async fn files_move_between_the_database_and_the_key_prefix_mode() {
    let mut prefix_spec = specs().remove(0);
    prefix_spec.address = format!("{}/20", common::redis_url());
    prefix_spec.options = data::DataOptions::Redis {
        index: 20,
        mode: data::RedisMode::Prefix {
            prefix_env: "P".into(),
        },
        copy: None,
    };
    let mut db_spec = prefix_spec.clone();
    db_spec.address = format!("{}/16", common::redis_url());
    db_spec.options = data::DataOptions::Redis {
        index: 16,
        mode: data::RedisMode::Database {
            first: 17,
            last: 19,
        },
        copy: None,
    };
    let (a, b, c) = (
        common::lane("pfxmoda"),
        common::lane("pfxmodb"),
        common::lane("pfxmodc"),
    );
    let mut r = connect().await;
    // Databases 16–20 are this test's alone: leftovers of an earlier failed run go.
    for i in 16..=20u32 {
        r.cmd(&[b"SELECT", i.to_string().as_bytes()]).await.unwrap();
        r.cmd(&[b"FLUSHDB"]).await.unwrap();
    }
    let ia = r.allocate(&a, 17, 19, 16).await.unwrap();
    let ic = r.allocate(&c, 17, 19, 16).await.unwrap();
    let db_target = |index: u32| Target {
        spec: db_spec.clone(),
        target: index.to_string(),
    };
    r.cmd(&[b"SELECT", ia.to_string().as_bytes()])
        .await
        .unwrap();
    write_keys(&mut r, "m:", 5).await;
    let a_keys = keys_under(&mut r, "").await;
    let a_keys: Vec<_> = a_keys
        .into_iter()
        .filter(|(k, _, _)| k.as_slice() != lane_data::redis::OWNER_KEY.as_bytes())
        .collect();
    assert_eq!(a_keys.len(), 10);

    // Database mode → key-prefix mode.
    let file = export(&a, &[db_target(ia)]).await;
    let tb = target(&[prefix_spec.clone()], &b);
    import(&b, &tb, &file, None).await.unwrap();
    r.cmd(&[b"SELECT", b"20"]).await.unwrap();
    let pb = data::redis_prefix(&b);
    assert_eq!(keys_under(&mut r, &pb).await, a_keys);

    // And back, into another database-mode lane.
    let file = export(&b, &tb).await;
    import(&c, &[db_target(ic)], &file, None).await.unwrap();
    r.cmd(&[b"SELECT", ic.to_string().as_bytes()])
        .await
        .unwrap();
    let c_keys: Vec<_> = keys_under(&mut r, "")
        .await
        .into_iter()
        .filter(|(k, _, _)| k.as_slice() != lane_data::redis::OWNER_KEY.as_bytes())
        .collect();
    assert_eq!(c_keys, a_keys);

    // Teardown of the three lanes.
    for (l, spec, t) in [
        (&a, &db_spec, Some(ia)),
        (&b, &prefix_spec, None),
        (&c, &db_spec, Some(ic)),
    ] {
        let records: Vec<_> = t
            .map(|i| data::record(spec, i.to_string()))
            .into_iter()
            .collect();
        let specs = [spec.clone()];
        let plan = teardown::plan(l, &specs, &records).unwrap();
        teardown::execute(&plan, &specs).await.unwrap();
    }
    r.cmd(&[b"SELECT", b"20"]).await.unwrap();
    assert!(keys_under(&mut r, &pb).await.is_empty());
    for i in [ia, ic] {
        r.cmd(&[b"SELECT", i.to_string().as_bytes()]).await.unwrap();
        assert_eq!(r.cmd(&[b"DBSIZE"]).await.unwrap(), Reply::Int(0));
    }
}
