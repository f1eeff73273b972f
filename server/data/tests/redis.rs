//! Redis database allocation against a real Redis: concurrent lanes get distinct databases, a
//! full pool is a clear error, release is guarded, and bad input gets clear errors. Each test uses
//! its own range of the server's 64 databases.

mod common;

use lane_data::DataError;
use lane_data::redis::{OWNER_KEY, Redis};

/// Empties databases `first..=last` (this test's range) before it starts.
async fn fresh(first: u32, last: u32) -> Redis {
    let mut r = Redis::connect(common::redis_url()).await.unwrap();
    for i in first..=last {
        r.cmd(&[b"SELECT", i.to_string().as_bytes()]).await.unwrap();
        r.cmd(&[b"FLUSHDB"]).await.unwrap();
    }
    r
}

#[tokio::test]
async fn concurrent_lanes_get_distinct_databases_and_a_full_pool_is_an_error() {
    let (first, last) = (10, 17);
    drop(fresh(first, last).await);
    // Ten lanes ask for one of eight databases (baseline's 13 excluded: seven) at the same time.
    let lanes: Vec<_> = (0..10).map(|_| common::lane("conc-")).collect();
    let mut tasks = Vec::new();
    for lane in lanes.clone() {
        tasks.push(tokio::spawn(async move {
            let mut r = Redis::connect(common::redis_url()).await.unwrap();
            r.allocate(&lane, first, last, 13).await
        }));
    }
    let mut got = Vec::new();
    let mut full = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(i) => got.push(i),
            Err(DataError::PoolFull {
                first: 10,
                last: 17,
                ..
            }) => full += 1,
            Err(e) => panic!("{e}"),
        }
    }
    got.sort();
    assert_eq!(
        got,
        [10, 11, 12, 14, 15, 16, 17],
        "distinct, never baseline's 13"
    );
    assert_eq!(full, 3);
    let err = {
        let mut r = Redis::connect(common::redis_url()).await.unwrap();
        r.allocate(&common::lane("late-"), first, last, 13)
            .await
            .unwrap_err()
    };
    assert!(
        err.to_string()
            .contains("every Redis database in the pool 10..=17"),
        "{err}"
    );

    // Each lane that got one sees its own again; the claims are on the server.
    let mut r = Redis::connect(common::redis_url()).await.unwrap();
    let slots = r.slots(first, last).await.unwrap();
    let owners: Vec<_> = slots.iter().filter_map(|s| s.owner.clone()).collect();
    assert_eq!(owners.len(), 7);
    for s in &slots {
        if let Some(owner) = &s.owner {
            let lane: lane_core::LaneId = owner.parse().unwrap();
            assert_eq!(r.allocate(&lane, first, last, 13).await.unwrap(), s.index);
            assert!(r.release(&lane, s.index).await.unwrap());
        }
    }
    assert!(
        r.slots(first, last)
            .await
            .unwrap()
            .iter()
            .all(|s| s.owner.is_none())
    );
}

#[tokio::test]
async fn release_is_guarded_and_baseline_keys_stay() {
    let (first, last) = (20, 23);
    let mut r = fresh(first, last).await;
    // Database 20 holds data no lane owns: never handed out, never flushed.
    r.cmd(&[b"SELECT", b"20"]).await.unwrap();
    r.cmd(&[b"SET", b"baseline-key", b"v"]).await.unwrap();
    let a = common::lane("a-");
    let b = common::lane("b-");
    let ia = r.allocate(&a, first, last, 99).await.unwrap();
    assert_eq!(ia, 21, "20 holds someone's data");
    let ib = r.allocate(&b, first, last, 99).await.unwrap();
    assert_eq!(ib, 22);
    // The lane writes into its own database.
    r.cmd(&[b"SELECT", b"21"]).await.unwrap();
    r.cmd(&[b"SET", b"k", b"lane a"]).await.unwrap();

    let err = r.release(&b, ia).await.unwrap_err();
    assert!(matches!(err, DataError::Guard(_)), "{err}");
    assert!(
        err.to_string().contains(&format!("belongs to lane `{a}`")),
        "{err}"
    );
    let err = r.release(&a, 20).await.unwrap_err();
    assert!(err.to_string().contains("no lane's claim"), "{err}");
    assert!(
        !r.release(&a, 23).await.unwrap(),
        "nobody's and empty: nothing to do"
    );

    assert!(r.release(&a, ia).await.unwrap());
    r.cmd(&[b"SELECT", b"21"]).await.unwrap();
    assert_eq!(
        r.cmd(&[b"DBSIZE"]).await.unwrap(),
        lane_data::redis::Reply::Int(0)
    );
    r.cmd(&[b"SELECT", b"20"]).await.unwrap();
    assert_eq!(
        r.cmd(&[b"GET", b"baseline-key"]).await.unwrap(),
        lane_data::redis::Reply::Bulk(Some(b"v".to_vec())),
        "untouched"
    );
    assert!(r.release(&b, ib).await.unwrap());
    // The claim key is lane's own.
    r.cmd(&[b"SELECT", b"22"]).await.unwrap();
    assert_eq!(
        r.cmd(&[b"EXISTS", OWNER_KEY.as_bytes()]).await.unwrap(),
        lane_data::redis::Reply::Int(0)
    );
    drop(fresh(first, last).await);
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = Redis::connect(&format!("redis://127.0.0.1:{port}"))
        .await
        .err()
        .expect("unreachable");
    assert!(matches!(err, DataError::Unreachable { .. }), "{err}");

    // The test server has no password: giving one is refused, and the password is not shown.
    let url = common::redis_url().replace("redis://", "redis://:wrong-secret@");
    let err = Redis::connect(&url).await.err().expect("refused");
    assert!(matches!(err, DataError::Auth { .. }), "{err}");
    assert!(!err.to_string().contains("wrong-secret"), "{err}");

    let mut r = Redis::connect(common::redis_url()).await.unwrap();
    let lane = common::lane("bad-");
    let err = r.allocate(&lane, 5, 4, 0).await.unwrap_err();
    assert!(err.to_string().contains("is empty"), "{err}");
    let err = r.allocate(&lane, 1000, 1001, 0).await.unwrap_err();
    assert!(
        err.to_string().contains("cannot select database 1000"),
        "{err}"
    );
    let err = r.delete_prefix(0, "").await.unwrap_err();
    assert!(matches!(err, DataError::Guard(_)), "{err}");
}

/// `prefix_usage` counts exactly the keys under a lane's prefix (not a longer lane id's, not the
/// lane's import staging, not baseline's), and its byte estimate from a bounded sample is near
/// the measure of every key.
#[tokio::test]
async fn prefix_usage_counts_the_lanes_keys_and_estimates_their_bytes() {
    let index = 21;
    let mut r = fresh(index, index).await;
    let lane = common::lane("use-");
    let prefix = lane_core::data::redis_prefix(&lane);
    let mut cmds: Vec<Vec<u8>> = Vec::new();
    for i in 0..300 {
        cmds.push(format!("{prefix}k:{i}").into_bytes());
    }
    let value = vec![b'v'; 200];
    let mut pipeline: Vec<Vec<&[u8]>> = cmds
        .iter()
        .map(|k| vec![&b"SET"[..], k.as_slice(), value.as_slice()])
        .collect();
    let decoys = [
        "base:1".to_owned(),
        format!("lane:{lane}x:k"),
        format!("lane:{lane}$imp"),
        format!("lane:{lane}$imp:t:k"),
    ];
    for d in &decoys {
        pipeline.push(vec![b"SET", d.as_bytes(), b"x"]);
    }
    r.pipeline(&pipeline).await.unwrap();

    let all = r.prefix_usage(index, &prefix, u64::MAX).await.unwrap();
    assert_eq!((all.keys, all.sampled), (300, 300), "{all:?}");
    assert!(all.bytes >= 300 * 200, "{all:?}");
    let some = r.prefix_usage(index, &prefix, 20).await.unwrap();
    assert_eq!((some.keys, some.sampled), (300, 20), "{some:?}");
    let (lo, hi) = (all.bytes * 9 / 10, all.bytes * 11 / 10);
    assert!((lo..=hi).contains(&some.bytes), "{some:?} vs {all:?}");
    let none = r
        .prefix_usage(index, &format!("lane:{lane}-none:"), 10)
        .await
        .unwrap();
    assert_eq!((none.keys, none.bytes, none.sampled), (0, 0, 0));
    // Glob characters in a prefix are matched literally.
    let glob = r.prefix_usage(index, "lane:*", 10).await.unwrap();
    assert_eq!(glob.keys, 0, "{glob:?}");
    assert!(r.prefix_usage(index, "", 10).await.is_err());
    r.cmd(&[b"FLUSHDB"]).await.unwrap();
}
