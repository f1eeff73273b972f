//! Copying baseline's keys matching patterns into a lane's Redis database, against a real Redis:
//! exactly the matching keys with their values and times to live, the key count and byte quota
//! respected exactly, a zero quota refused, the guard, and baseline unchanged. The tests use
//! databases 40 to 47 of the server's 64, each its own pair.

mod common;

use std::collections::BTreeMap;

use lane_core::data::RedisCopy;
use lane_data::DataError;
use lane_data::redis::{OWNER_KEY, Redis, Reply};
use lane_data::redis_copy::{Stop, copy_keys};

async fn select(r: &mut Redis, index: u32) {
    r.cmd(&[b"SELECT", index.to_string().as_bytes()])
        .await
        .unwrap();
}

/// Empties `indexes` and connects.
async fn fresh(indexes: &[u32]) -> Redis {
    let mut r = Redis::connect(common::redis_url()).await.unwrap();
    for i in indexes {
        select(&mut r, *i).await;
        r.cmd(&[b"FLUSHDB"]).await.unwrap();
    }
    r
}

/// Every key of database `index`: its `DUMP` and whether it has a time to live.
async fn snapshot(r: &mut Redis, index: u32) -> BTreeMap<Vec<u8>, (Vec<u8>, bool)> {
    select(r, index).await;
    let Reply::Array(Some(keys)) = r.cmd(&[b"KEYS", b"*"]).await.unwrap() else {
        panic!("KEYS answers an array")
    };
    let mut out = BTreeMap::new();
    for k in keys {
        let Reply::Bulk(Some(k)) = k else { continue };
        let Reply::Bulk(Some(dump)) = r.cmd(&[b"DUMP", &k]).await.unwrap() else {
            panic!("DUMP answers")
        };
        let Reply::Int(pttl) = r.cmd(&[b"PTTL", &k]).await.unwrap() else {
            panic!("PTTL answers")
        };
        out.insert(k, (dump, pttl > 0));
    }
    out
}

async fn pttl(r: &mut Redis, key: &str) -> i64 {
    match r.cmd(&[b"PTTL", key.as_bytes()]).await.unwrap() {
        Reply::Int(n) => n,
        other => panic!("{other:?}"),
    }
}

/// Baseline's keys in database `index`: strings, a hash, a list, a set, some with a TTL.
async fn seed(r: &mut Redis, index: u32) {
    select(r, index).await;
    for (k, v) in [
        ("session:1", "alice"),
        ("session:2", "bob"),
        ("session:3", "carol"),
        ("feature:dark", "on"),
        ("other:x", "no"),
        ("sessions", "not session:*"),
    ] {
        r.cmd(&[b"SET", k.as_bytes(), v.as_bytes()]).await.unwrap();
    }
    r.cmd(&[b"PEXPIRE", b"session:2", b"600000"]).await.unwrap();
    r.cmd(&[b"HSET", b"feature:flags", b"a", b"1", b"b", b"2"])
        .await
        .unwrap();
    r.cmd(&[b"EXPIRE", b"feature:flags", b"3600"])
        .await
        .unwrap();
    r.cmd(&[b"RPUSH", b"session:list", b"x", b"y", b"z"])
        .await
        .unwrap();
    r.cmd(&[b"SADD", b"other:set", b"m"]).await.unwrap();
}

fn copy(patterns: &[&str], keys: u64, bytes: u64) -> RedisCopy {
    RedisCopy {
        patterns: patterns.iter().map(|p| p.to_string()).collect(),
        keys,
        bytes,
    }
}

const MATCHING: [&str; 6] = [
    "feature:dark",
    "feature:flags",
    "session:1",
    "session:2",
    "session:3",
    "session:list",
];

#[tokio::test]
async fn copies_exactly_the_matching_keys_with_their_ttls_and_leaves_baseline_alone() {
    let (base, first, last) = (40, 41, 41);
    let mut r = fresh(&[base, first]).await;
    seed(&mut r, base).await;
    let before = snapshot(&mut r, base).await;
    let lane = common::lane("copy-");
    let (index, claimed) = r.claim(&lane, first, last, base).await.unwrap();
    assert_eq!((index, claimed), (first, true));
    assert_eq!(
        r.claim(&lane, first, last, base).await.unwrap(),
        (first, false),
        "a second deploy finds the lane's database, not a new one"
    );

    let report = copy_keys(
        common::redis_url(),
        base,
        &lane,
        index,
        &copy(&["session:*", "feature:*"], 100, 1 << 20),
    )
    .await
    .unwrap();
    assert_eq!(report.matched, 6);
    assert_eq!(report.keys, 6);
    assert_eq!(report.stopped, None);

    let got = snapshot(&mut r, index).await;
    let mut names: Vec<String> = got
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .filter(|k| k != OWNER_KEY)
        .collect();
    names.sort();
    assert_eq!(names, MATCHING);
    let mut bytes = 0;
    for k in MATCHING {
        let (lane_dump, lane_ttl) = &got[k.as_bytes()];
        let (base_dump, base_ttl) = &before[k.as_bytes()];
        assert_eq!(lane_dump, base_dump, "{k}: the same value");
        assert_eq!(
            lane_ttl, base_ttl,
            "{k}: a TTL exactly when baseline's has one"
        );
        bytes += (k.len() + base_dump.len()) as u64;
    }
    assert_eq!(report.bytes, bytes);
    select(&mut r, index).await;
    let t = pttl(&mut r, "session:2").await;
    assert!(0 < t && t <= 600_000, "session:2's TTL carried over: {t}");
    let t = pttl(&mut r, "feature:flags").await;
    assert!(3_500_000 < t && t <= 3_600_000, "feature:flags's TTL: {t}");
    assert_eq!(pttl(&mut r, "session:1").await, -1, "no TTL stays none");

    assert_eq!(snapshot(&mut r, base).await, before, "baseline unchanged");
    assert!(r.release(&lane, index).await.unwrap());
}

#[tokio::test]
async fn the_key_count_and_byte_quota_are_respected_exactly() {
    let (base, target) = (42, 43);
    let mut r = fresh(&[base, target]).await;
    seed(&mut r, base).await;
    let before = snapshot(&mut r, base).await;
    // The sizes of the matching keys in the order they are taken (byte order of the names).
    let sizes: Vec<u64> = MATCHING
        .iter()
        .map(|k| (k.len() + before[k.as_bytes()].0.len()) as u64)
        .collect();
    let lane = common::lane("quota-");
    let pats = ["session:*", "feature:*"];

    // (key count, byte quota) → keys copied, why it stopped.
    let three: u64 = sizes[..3].iter().sum();
    let all: u64 = sizes.iter().sum();
    let cases: Vec<(u64, u64, usize, Option<Stop>)> = vec![
        (
            100,
            three,
            3,
            Some(Stop::Bytes {
                key: MATCHING[3].into(),
            }),
        ),
        (
            100,
            three - 1,
            2,
            Some(Stop::Bytes {
                key: MATCHING[2].into(),
            }),
        ),
        (100, all, 6, None),
        (
            100,
            all - 1,
            5,
            Some(Stop::Bytes {
                key: MATCHING[5].into(),
            }),
        ),
        (2, all, 2, Some(Stop::Keys)),
        (6, all, 6, None),
        (
            1,
            sizes[0] - 1,
            0,
            Some(Stop::Bytes {
                key: MATCHING[0].into(),
            }),
        ),
    ];
    for (keys, bytes, want, stop) in cases {
        fresh(&[target]).await;
        let (index, claimed) = r.claim(&lane, target, target, base).await.unwrap();
        assert!(claimed);
        let report = copy_keys(
            common::redis_url(),
            base,
            &lane,
            index,
            &copy(&pats, keys, bytes),
        )
        .await
        .unwrap();
        assert_eq!(report.keys as usize, want, "keys {keys}, bytes {bytes}");
        assert_eq!(report.bytes, sizes[..want].iter().sum::<u64>());
        assert!(report.bytes <= bytes);
        assert_eq!(report.stopped, stop, "keys {keys}, bytes {bytes}");
        let got = snapshot(&mut r, index).await;
        let names: Vec<String> = got
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .filter(|k| k != OWNER_KEY)
            .collect();
        assert_eq!(names, MATCHING[..want], "the first keys in name order");
    }
    assert_eq!(snapshot(&mut r, base).await, before, "baseline unchanged");
    assert!(r.release(&lane, target).await.unwrap());
}

#[tokio::test]
async fn a_zero_quota_and_writes_outside_the_lanes_database_are_refused() {
    let (base, target, other) = (44, 45, 46);
    let mut r = fresh(&[base, target, other]).await;
    seed(&mut r, base).await;
    let before = snapshot(&mut r, base).await;
    let lane = common::lane("zero-");
    let (index, _) = r.claim(&lane, target, target, base).await.unwrap();
    let url = common::redis_url();

    for (keys, bytes) in [(0, 100), (10, 0)] {
        let err = copy_keys(url, base, &lane, index, &copy(&["*"], keys, bytes))
            .await
            .unwrap_err();
        assert!(matches!(err, DataError::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains("above zero"), "{err}");
    }
    let err = copy_keys(url, base, &lane, index, &copy(&[], 10, 10))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("needs key patterns"), "{err}");
    assert_eq!(snapshot(&mut r, index).await.len(), 1, "only the claim");

    // Into baseline's own index, or a database the lane does not hold: refused, nothing written.
    let err = copy_keys(url, base, &lane, base, &copy(&["*"], 10, 1000))
        .await
        .unwrap_err();
    assert!(matches!(err, DataError::Guard(_)), "{err:?}");
    let err = copy_keys(url, base, &lane, other, &copy(&["*"], 10, 1000))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("claimed by nobody, not lane"),
        "{err}"
    );
    assert!(snapshot(&mut r, other).await.is_empty());
    let someone = common::lane("else-");
    r.claim(&someone, other, other, base).await.unwrap();
    let err = copy_keys(url, base, &lane, other, &copy(&["*"], 10, 1000))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!("claimed by `{someone}`")),
        "{err}"
    );
    assert_eq!(snapshot(&mut r, other).await.len(), 1, "only its claim");

    // A pattern matching nothing copies nothing.
    let report = copy_keys(url, base, &lane, index, &copy(&["nothing:*"], 10, 1000))
        .await
        .unwrap();
    assert_eq!((report.matched, report.keys, report.bytes), (0, 0, 0));
    assert_eq!(snapshot(&mut r, base).await, before, "baseline unchanged");
    assert!(r.release(&lane, index).await.unwrap());
    assert!(r.release(&someone, other).await.unwrap());
}
