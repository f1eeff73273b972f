//! `data-bench`: lane-data's schema clone, and export + import throughput, against
//! `mysqldump | mysql` of the same data in the same run (see docs/benchmarks.md).
//!
//! ```text
//! cargo run --release -p lane-data --bin data-bench -- [--rows 300000] [--runs 3]
//! ```
//!
//! Uses the MariaDB of `scripts/services.sh` (`LANE_TEST_MYSQL_URL`, default
//! `mysql://lane:lane@127.0.0.1:23306`); needs `mysqldump` and `mysql` on PATH. Creates a baseline
//! database `lb_bench_<pid>` with three tables (foreign keys, indexes), a view and a trigger,
//! fills it, and drops everything it made at the end.
//!
//! - clone: `Mysql::clone_schema` (schema only) vs `mysqldump --no-data | mysql` into a fresh
//!   database; median of `--runs`.
//! - export + import: `transfer::export` of a lane database holding the rows to a file, then
//!   `transfer::import` of it into another lane's database (staging + swap), vs `mysqldump
//!   --single-transaction` of the same database to a file, then `mysql` loading it into a
//!   database holding the previous run's copy (the dump drops and recreates its tables, as the
//!   import replaces lane b's data). Rows/s over all rows; median of `--runs`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lane_core::LaneId;
use lane_core::data::Address;
use lane_core::manifest::Manifest;
use lane_data::mysql::{Mysql, quote};
use lane_data::transfer::{self, Cancel, Target};

mod common;
use common::{arg, die, median};

/// `mysqldump`/`mysql` connection arguments from a `mysql://user:pw@host:port` URL.
fn client_args(url: &str) -> Vec<String> {
    let a = Address::parse(url).unwrap_or_else(|e| die(&e));
    let (user, pw) = match a.userinfo.as_deref().map(|u| u.split_once(':')) {
        Some(Some((u, p))) => (u.to_owned(), Some(p.to_owned())),
        Some(None) => (a.userinfo.clone().unwrap_or_default(), None),
        None => ("root".to_owned(), None),
    };
    let (host, port) = a
        .authority
        .rsplit_once(':')
        .map_or((a.authority.clone(), "3306".to_owned()), |(h, p)| {
            (h.to_owned(), p.to_owned())
        });
    let mut v = vec![
        format!("--host={host}"),
        format!("--port={port}"),
        "--protocol=TCP".into(),
        format!("--user={user}"),
    ];
    if let Some(pw) = pw {
        v.push(format!("--password={pw}"));
    }
    v
}

fn sh(what: &str, cmd: &mut Command) {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| die(&format!("cannot run {what}: {e}")));
    if !out.status.success() {
        die(&format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows = arg("--rows", 300_000);
    let runs = arg("--runs", 3).max(1) as usize;
    let url = std::env::var("LANE_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://lane:lane@127.0.0.1:23306".into());
    let missing = || {
        ["mysqldump", "mysql"]
            .into_iter()
            .find(|tool| Command::new(tool).arg("--version").output().is_err())
    };
    if missing().is_some() {
        // The same apt path as the test servers.
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services.sh");
        sh(
            "scripts/services.sh client",
            Command::new(script).arg("client"),
        );
    }
    if let Some(tool) = missing() {
        die(&format!(
            "`{tool}` is missing: install mariadb-client (scripts/services.sh client)"
        ));
    }
    let client = client_args(&url);
    let m = Mysql::connect(&url)
        .await
        .unwrap_or_else(|e| die(&e.to_string()));
    let db = format!("lb_bench_{}", std::process::id());
    let q = quote(&db);
    let dir = std::env::temp_dir().join(format!("lane-data-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    m.execute(&[
        &format!("CREATE DATABASE {q}"),
        &format!(
            "CREATE TABLE {q}.customers (id INT AUTO_INCREMENT PRIMARY KEY, \
             name VARCHAR(60) NOT NULL, email VARCHAR(80), UNIQUE KEY email (email))"
        ),
        &format!(
            "CREATE TABLE {q}.orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer INT NOT NULL, \
             total DECIMAL(10,2) NOT NULL, note VARCHAR(200), made DATETIME NOT NULL, \
             KEY by_customer (customer, made), \
             CONSTRAINT fk_customer FOREIGN KEY (customer) REFERENCES customers (id))"
        ),
        &format!("CREATE TABLE {q}.audit (id BIGINT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(40))"),
        &format!("CREATE VIEW {q}.big AS SELECT id, total FROM {q}.orders WHERE total > 90"),
        // Unqualified, as most schemas write it (a dump of it loads into another database).
        &format!("USE {q}"),
        "CREATE TRIGGER audit_orders AFTER DELETE ON orders FOR EACH ROW \
         INSERT INTO audit (what) VALUES (CONCAT('deleted ', OLD.id))",
    ])
    .await
    .unwrap_or_else(|e| die(&e.to_string()));
    let customers = (rows / 10).max(1);
    m.execute(&[
        &format!(
            "INSERT INTO {q}.customers SELECT seq, CONCAT('customer ', seq), \
             CONCAT('c', seq, '@example.com') FROM {q}.seq_1_to_{customers}"
        ),
        &format!(
            "INSERT INTO {q}.orders SELECT seq, 1 + seq % {customers}, (seq % 10000) / 100, \
             CONCAT('note ', REPEAT('n', seq % 60)), '2026-01-01' + INTERVAL (seq % 100000) MINUTE \
             FROM {q}.seq_1_to_{rows}"
        ),
    ])
    .await
    .unwrap_or_else(|e| die(&e.to_string()));
    let total_rows = rows + customers;

    // Schema clone.
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..runs {
        let lane: LaneId = format!("bench-clone-{i}").parse().unwrap();
        let t = Instant::now();
        let r = m
            .clone_schema(&db, &lane, None)
            .await
            .unwrap_or_else(|e| die(&e.to_string()));
        ours.push(t.elapsed());
        m.drop_lane_database(&db, &lane, &r.database).await.unwrap();

        let target = format!("lb_dump_{}_{i}", std::process::id());
        let file = dir.join("schema.sql");
        let t = Instant::now();
        sh(
            "mysqldump --no-data",
            Command::new("mysqldump")
                .args(&client)
                .args(["--no-data", "--routines=false", "--triggers", &db])
                .stdout(std::fs::File::create(&file).unwrap()),
        );
        m.execute(&[&format!("CREATE DATABASE {}", quote(&target))])
            .await
            .unwrap();
        sh(
            "mysql",
            Command::new("mysql")
                .args(&client)
                .arg(&target)
                .stdin(std::fs::File::open(&file).unwrap()),
        );
        theirs.push(t.elapsed());
        m.execute(&[&format!("DROP DATABASE {}", quote(&target))])
            .await
            .unwrap();
    }
    let (clone_ours, clone_theirs) = (median(ours), median(theirs));

    // Export + import.
    let spec_for = |_: ()| {
        Manifest::parse(
            std::path::Path::new("lane.toml"),
            &format!(
                "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n\
                 [data.orders]\nkind = \"mysql\"\nurl = \"{url}/{db}\"\nenv = \"DSN\"\n"
            ),
        )
        .unwrap()
        .data
        .remove(0)
    };
    let spec = spec_for(());
    let (a, b): (LaneId, LaneId) = ("bench-a".parse().unwrap(), "bench-b".parse().unwrap());
    let big = lane_core::data::Sample {
        rows: u64::MAX / 4,
        bytes: u64::MAX / 4,
    };
    let ra = m
        .clone_schema(&db, &a, Some(big))
        .await
        .unwrap_or_else(|e| die(&e.to_string()));
    let rb = m.clone_schema(&db, &b, None).await.unwrap();
    let ta = [Target {
        spec: spec.clone(),
        target: ra.database.clone(),
    }];
    let tb = [Target {
        spec: spec.clone(),
        target: rb.database.clone(),
    }];
    let mut export_t = Vec::new();
    let mut import_t = Vec::new();
    let mut dump_t = Vec::new();
    let mut load_t = Vec::new();
    let mut file_bytes = 0;
    let mut dump_bytes = 0;
    let quiet = |_: &transfer::Progress| {};
    let target = format!("lb_load_{}", std::process::id());
    m.execute(&[&format!("CREATE DATABASE {}", quote(&target))])
        .await
        .unwrap();
    for _ in 0..runs {
        let file = dir.join("lane.lanedata");
        let t = Instant::now();
        let out = tokio::io::BufWriter::with_capacity(
            1 << 20,
            tokio::fs::File::create(&file).await.unwrap(),
        );
        let (mut w, report) = transfer::export(&a, &ta, out, &quiet, &Cancel::new())
            .await
            .unwrap_or_else(|e| die(&e.to_string()));
        tokio::io::AsyncWriteExt::flush(&mut w).await.unwrap();
        export_t.push(t.elapsed());
        file_bytes = report.bytes;
        assert_eq!(report.bindings[0].items, total_rows);
        let t = Instant::now();
        let input = tokio::io::BufReader::with_capacity(
            1 << 20,
            tokio::fs::File::open(&file).await.unwrap(),
        );
        transfer::import(&b, &tb, input, None, file_bytes, &quiet, &Cancel::new())
            .await
            .unwrap_or_else(|e| die(&e.to_string()));
        import_t.push(t.elapsed());

        let dump = dir.join("dump.sql");
        let t = Instant::now();
        sh(
            "mysqldump",
            Command::new("mysqldump")
                .args(&client)
                .args(["--single-transaction", "--triggers", &ra.database])
                .stdout(std::fs::File::create(&dump).unwrap()),
        );
        dump_t.push(t.elapsed());
        dump_bytes = std::fs::metadata(&dump).unwrap().len();
        // Like the import into lane b, the load replaces the previous run's copy (the dump drops
        // and recreates its tables); the first run loads into an empty database, as the first
        // import does.
        let t = Instant::now();
        sh(
            "mysql",
            Command::new("mysql")
                .args(&client)
                .arg(&target)
                .stdin(std::fs::File::open(&dump).unwrap()),
        );
        load_t.push(t.elapsed());
        let check = m
            .column(&format!("SELECT COUNT(*) FROM {}.orders", quote(&target)))
            .await
            .unwrap();
        assert_eq!(check, [rows.to_string()]);
    }
    m.execute(&[&format!("DROP DATABASE {}", quote(&target))])
        .await
        .unwrap();
    let same = m
        .show(&format!("CHECKSUM TABLE {}.orders", quote(&rb.database)), 1)
        .await
        .unwrap()
        == m.show(&format!("CHECKSUM TABLE {q}.orders"), 1)
            .await
            .unwrap();
    assert!(same, "the imported table equals the source");
    let (e, i, d, l) = (
        median(export_t),
        median(import_t),
        median(dump_t),
        median(load_t),
    );
    let rps = |t: Duration| total_rows as f64 / t.as_secs_f64();
    println!(
        "data-bench: {total_rows} rows ({rows} orders, {customers} customers), median of {runs} runs"
    );
    println!(
        "schema clone      lane {:>8.1} ms   mysqldump --no-data | mysql {:>8.1} ms   ratio (theirs/ours) {:.2}x",
        clone_ours.as_secs_f64() * 1e3,
        clone_theirs.as_secs_f64() * 1e3,
        clone_theirs.as_secs_f64() / clone_ours.as_secs_f64()
    );
    println!(
        "export            lane {:>10.0} rows/s   mysqldump       {:>10.0} rows/s   ratio {:.2}x   (file {} vs {} bytes)",
        rps(e),
        rps(d),
        rps(e) / rps(d),
        file_bytes,
        dump_bytes
    );
    println!(
        "import            lane {:>10.0} rows/s   mysql < dump    {:>10.0} rows/s   ratio {:.2}x   (lane: staged + swapped)",
        rps(i),
        rps(l),
        rps(i) / rps(l)
    );
    println!(
        "export + import   lane {:>10.0} rows/s   mysqldump|mysql {:>10.0} rows/s   ratio {:.2}x",
        rps(e + i),
        rps(d + l),
        rps(e + i) / rps(d + l)
    );
    m.drop_lane_database(&db, &a, &ra.database).await.unwrap();
    m.drop_lane_database(&db, &b, &rb.database).await.unwrap();
    m.execute(&[&format!("DROP DATABASE {q}")]).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    m.close().await;
}
