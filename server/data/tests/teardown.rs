//! A lane's teardown against the real servers: the dry-run plan names exactly the lane's own
//! database and Redis index; running it removes them and leaves baseline's tables (checksums) and
//! keys as they were.

mod common;

use std::path::Path;

use lane_core::data;
use lane_core::manifest::Manifest;
use lane_data::mysql::{Mysql, quote};
use lane_data::redis::{Redis, Reply};
use lane_data::teardown;

#[tokio::test]
async fn teardown_removes_the_lanes_own_data_only() {
    let m = Mysql::connect(common::mysql_url()).await.unwrap();
    let db = common::unique("lt_td_");
    let q = quote(&db);
    m.execute(&[
        &format!("CREATE DATABASE {q}"),
        &format!("CREATE TABLE {q}.t (id INT PRIMARY KEY, v VARCHAR(10))"),
        &format!("INSERT INTO {q}.t VALUES (1, 'one'), (2, 'two')"),
    ])
    .await
    .unwrap();
    let checksum = || async { m.show(&format!("CHECKSUM TABLE {q}.t"), 1).await.unwrap() };
    let before = checksum().await;

    let (first, last, base_index) = (30u32, 33u32, 29u32);
    let redis_base = format!("{}/{base_index}", common::redis_url());
    let mut r = Redis::connect(common::redis_url()).await.unwrap();
    for i in base_index..=last {
        r.cmd(&[b"SELECT", i.to_string().as_bytes()]).await.unwrap();
        r.cmd(&[b"FLUSHDB"]).await.unwrap();
    }
    r.cmd(&[b"SELECT", base_index.to_string().as_bytes()])
        .await
        .unwrap();
    r.cmd(&[b"SET", b"base", b"1"]).await.unwrap();

    let manifest = Manifest::parse(
        Path::new("lane.toml"),
        &format!(
            "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n\
             [data.orders]\nkind = \"mysql\"\nurl = \"{}/{db}\"\nenv = \"DSN\"\n\
             [data.cache]\nkind = \"redis\"\nurl = \"{redis_base}\"\nenv = \"R\"\npool = [{first}, {last}]\n",
            common::mysql_url()
        ),
    )
    .unwrap();
    let specs = &manifest.data;
    let lane = common::lane("td-");

    // Provision: the clone and a Redis database, recorded as the lane's.
    let report = m.clone_schema(&db, &lane, None).await.unwrap();
    let index = r.allocate(&lane, first, last, base_index).await.unwrap();
    let records = vec![data::record(&specs[0], index.to_string())];
    assert_eq!(specs[0].name, "cache");
    // The lane writes into its copies.
    m.execute(&[&format!(
        "INSERT INTO {}.t VALUES (7, 'lane')",
        quote(&report.database)
    )])
    .await
    .unwrap();
    r.cmd(&[b"SELECT", index.to_string().as_bytes()])
        .await
        .unwrap();
    r.cmd(&[b"SET", b"k", b"lane"]).await.unwrap();

    // Dry run: the plan, nothing removed.
    let plan = teardown::plan(&lane, specs, &records).unwrap();
    let text = plan.to_string();
    assert!(
        text.contains(&format!("cache: flush Redis database {index}"))
            && text.contains(&format!(
                "orders: drop MySQL database `{}`",
                report.database
            )),
        "{text}"
    );
    assert_eq!(plan.actions.len(), 2);
    assert!(m.database_exists(&report.database).await.unwrap());

    let done = teardown::execute(&plan, specs).await.unwrap();
    assert!(done.iter().all(|d| d.removed), "{done:?}");
    assert!(!m.database_exists(&report.database).await.unwrap());
    r.cmd(&[b"SELECT", index.to_string().as_bytes()])
        .await
        .unwrap();
    assert_eq!(r.cmd(&[b"DBSIZE"]).await.unwrap(), Reply::Int(0));
    // Again: nothing left to remove, no error.
    let done = teardown::execute(&plan, specs).await.unwrap();
    assert!(done.iter().all(|d| !d.removed), "{done:?}");

    // Baseline as it was.
    assert_eq!(checksum().await, before);
    r.cmd(&[b"SELECT", base_index.to_string().as_bytes()])
        .await
        .unwrap();
    assert_eq!(
        r.cmd(&[b"GET", b"base"]).await.unwrap(),
        Reply::Bulk(Some(b"1".to_vec()))
    );

    // A plan altered to name baseline is refused by the guard before anything runs.
    let mut evil = plan.clone();
    if let teardown::Action::DropDatabase { database, .. } = &mut evil.actions[1] {
        *database = db.clone();
    }
    let err = teardown::execute(&evil, specs).await.unwrap_err();
    assert!(err.to_string().starts_with("refused"), "{err}");
    assert!(m.database_exists(&db).await.unwrap());

    r.cmd(&[b"FLUSHDB"]).await.unwrap();
    m.execute(&[&format!("DROP DATABASE {q}")]).await.unwrap();
    m.close().await;
}
