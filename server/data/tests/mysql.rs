//! The lane database against a real MariaDB: the cloned schema equals baseline's, the sample
//! respects its row limit and byte quota exactly and keeps foreign keys consistent, teardown
//! leaves baseline untouched, and bad input gets a clear error.

mod common;

use lane_core::data::Sample;
use lane_data::DataError;
use lane_data::mysql::{Mysql, quote, strip_definer};

/// A baseline database with several tables (foreign keys, indexes, defaults, a generated
/// column), a view over a view, and triggers. Returns its name.
async fn baseline(m: &Mysql) -> String {
    let db = common::unique("lt_base_");
    let q = quote(&db);
    let create = format!("CREATE DATABASE {q}");
    let statements = [
        create.as_str(),
        &format!(
            "CREATE TABLE {q}.customers (id INT AUTO_INCREMENT PRIMARY KEY, \
             name VARCHAR(40) NOT NULL DEFAULT 'anon', email VARCHAR(80), \
             created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, UNIQUE KEY uq_email (email)) \
             ENGINE=InnoDB"
        ),
        &format!(
            "CREATE TABLE {q}.orders (id INT AUTO_INCREMENT PRIMARY KEY, customer_id INT NOT NULL, \
             total DECIMAL(10,2) NOT NULL DEFAULT 0.00, doubled DECIMAL(11,2) AS (total * 2) VIRTUAL, \
             KEY ix_total (total), \
             CONSTRAINT fk_customer FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE) \
             ENGINE=InnoDB"
        ),
        &format!(
            "CREATE TABLE {q}.audit (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT, note TEXT)"
        ),
        &format!(
            "CREATE VIEW {q}.big_orders AS SELECT o.id, c.name, o.total FROM {q}.orders o \
             JOIN {q}.customers c ON c.id = o.customer_id WHERE o.total > 100"
        ),
        &format!("CREATE VIEW {q}.big_order_names AS SELECT name FROM {q}.big_orders"),
        &format!(
            "CREATE TRIGGER {q}.orders_audit AFTER INSERT ON {q}.orders FOR EACH ROW \
             INSERT INTO audit (order_id, note) VALUES (NEW.id, 'created')"
        ),
        &format!(
            "CREATE TRIGGER {q}.orders_check BEFORE INSERT ON {q}.orders FOR EACH ROW \
             SET NEW.total = GREATEST(NEW.total, 0)"
        ),
    ];
    m.execute(&statements).await.unwrap();
    // Customers 1..=6, orders 1..=12 (two per customer).
    let mut inserts = Vec::new();
    for c in 1..=6 {
        inserts.push(format!(
            "INSERT INTO {q}.customers (id, name, email) VALUES ({c}, 'customer{c}', 'c{c}@example.com')"
        ));
    }
    for o in 1..=12 {
        let c = (o + 1) / 2;
        inserts.push(format!(
            "INSERT INTO {q}.orders (id, customer_id, total) VALUES ({o}, {c}, {o}50.00)"
        ));
    }
    let refs: Vec<&str> = inserts.iter().map(String::as_str).collect();
    m.execute(&refs).await.unwrap();
    db
}

/// `SHOW CREATE <what>` of `db`.`name`, with references to `db` itself unqualified (the server
/// qualifies them or not depending on the connection's current database).
async fn show(m: &Mysql, what: &str, db: &str, name: &str, col: usize) -> String {
    m.show(
        &format!("SHOW CREATE {what} {}.{}", quote(db), quote(name)),
        col,
    )
    .await
    .unwrap()
    .replace(&format!("{}.", quote(db)), "")
}

/// Checksums of every table of `db`.
async fn checksums(m: &Mysql, db: &str) -> Vec<String> {
    let tables = m
        .column(&format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}' \
             AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME"
        ))
        .await
        .unwrap();
    let mut out = Vec::new();
    for t in tables {
        let sum = m
            .show(&format!("CHECKSUM TABLE {}.{}", quote(db), quote(&t)), 1)
            .await
            .unwrap();
        let count = m
            .column(&format!("SELECT COUNT(*) FROM {}.{}", quote(db), quote(&t)))
            .await
            .unwrap();
        out.push(format!("{t}:{sum}:{}", count[0]));
    }
    out
}

#[tokio::test]
async fn the_lane_schema_equals_baselines() {
    let m = Mysql::connect(common::mysql_url()).await.unwrap();
    let base = baseline(&m).await;
    let lane = common::lane("ddl-");
    let before = checksums(&m, &base).await;
    let report = m.clone_schema(&base, &lane, None).await.unwrap();
    let target = report.database.clone();
    assert_eq!(
        target,
        format!("{base}__lane_{}", lane.as_str().replace('-', "_"))
    );
    assert!(report.created);
    assert_eq!(
        (report.tables, report.views, report.triggers),
        (3, 2, 2),
        "{report:?}"
    );
    assert_eq!(report.rows, 0, "schema only");

    for t in ["audit", "customers", "orders"] {
        assert_eq!(
            show(&m, "TABLE", &base, t, 1).await,
            show(&m, "TABLE", &target, t, 1).await,
            "table {t}"
        );
    }
    for v in ["big_orders", "big_order_names"] {
        let b = strip_definer(&show(&m, "VIEW", &base, v, 1).await);
        let l = strip_definer(&show(&m, "VIEW", &target, v, 1).await);
        assert!(
            !l.contains(&format!("`{base}`.")),
            "the lane view reads the lane: {l}"
        );
        assert_eq!(b, l, "view {v}");
    }
    for tr in ["orders_audit", "orders_check"] {
        let b = strip_definer(&show(&m, "TRIGGER", &base, tr, 2).await);
        let l = strip_definer(&show(&m, "TRIGGER", &target, tr, 2).await);
        assert!(
            !l.contains(&format!("`{base}`.")),
            "the lane trigger is on the lane: {l}"
        );
        assert_eq!(b, l, "trigger {tr}");
    }
    // The lane's triggers act on the lane's tables only.
    m.execute(&[
        &format!(
            "INSERT INTO {}.customers (id, name) VALUES (1, 'x')",
            quote(&target)
        ),
        &format!(
            "INSERT INTO {}.orders (customer_id, total) VALUES (1, -5)",
            quote(&target)
        ),
    ])
    .await
    .unwrap();
    let audit = m
        .column(&format!("SELECT note FROM {}.audit", quote(&target)))
        .await
        .unwrap();
    assert_eq!(audit, ["created"]);
    let total = m
        .column(&format!("SELECT total FROM {}.orders", quote(&target)))
        .await
        .unwrap();
    assert_eq!(total, ["0.00"], "the BEFORE trigger ran");
    // A second clone does nothing.
    let again = m.clone_schema(&base, &lane, None).await.unwrap();
    assert!(!again.created);

    // Teardown: the guard refuses baseline; the lane database goes; baseline is as it was.
    let err = m.drop_lane_database(&base, &lane, &base).await.unwrap_err();
    assert!(matches!(err, DataError::Guard(_)), "{err}");
    assert!(m.drop_lane_database(&base, &lane, &target).await.unwrap());
    assert!(!m.database_exists(&target).await.unwrap());
    assert!(
        !m.drop_lane_database(&base, &lane, &target).await.unwrap(),
        "gone already"
    );
    assert_eq!(checksums(&m, &base).await, before, "baseline untouched");
    m.execute(&[&format!("DROP DATABASE {}", quote(&base))])
        .await
        .unwrap();
    m.close().await;
}

/// Row sizes of a table of ids `1..=n` with a 10-byte payload: text length of the id + 10.
fn size(id: u64) -> u64 {
    id.to_string().len() as u64 + 10
}

#[tokio::test]
async fn the_sample_respects_the_row_limit_and_the_byte_quota_exactly() {
    let m = Mysql::connect(common::mysql_url()).await.unwrap();
    let db = common::unique("lt_quota_");
    let q = quote(&db);
    let mut stmts = vec![
        format!("CREATE DATABASE {q}"),
        format!("CREATE TABLE {q}.a_items (id INT PRIMARY KEY, payload CHAR(10) NOT NULL)"),
        format!("CREATE TABLE {q}.b_items (id INT PRIMARY KEY, payload CHAR(10) NOT NULL)"),
    ];
    for t in ["a_items", "b_items"] {
        for i in 1..=12 {
            stmts.push(format!("INSERT INTO {q}.{t} VALUES ({i}, 'xxxxxxxxxx')"));
        }
    }
    let refs: Vec<&str> = stmts.iter().map(String::as_str).collect();
    m.execute(&refs).await.unwrap();
    let before = checksums(&m, &db).await;

    // Row limit 5 per table, quota large: 5 + 5 rows.
    let lane = common::lane("rows-");
    let r = m
        .clone_schema(
            &db,
            &lane,
            Some(Sample {
                rows: 5,
                bytes: 1 << 20,
            }),
        )
        .await
        .unwrap();
    let five: u64 = (1..=5).map(size).sum();
    assert_eq!(
        (r.rows, r.bytes, r.quota_reached_at.as_deref()),
        (10, 2 * five, None)
    );
    m.drop_lane_database(&db, &lane, &r.database).await.unwrap();

    // A quota that is exactly the first 12 rows of a_items and 3 of b_items.
    let all_a: u64 = (1..=12).map(size).sum();
    let exact = all_a + (1..=3).map(size).sum::<u64>();
    let lane = common::lane("exact-");
    let r = m
        .clone_schema(
            &db,
            &lane,
            Some(Sample {
                rows: 100,
                bytes: exact,
            }),
        )
        .await
        .unwrap();
    assert_eq!((r.rows, r.bytes), (15, exact), "{r:?}");
    assert_eq!(r.quota_reached_at.as_deref(), Some("b_items"));
    let counted = m
        .column(&format!(
            "SELECT SUM(LENGTH(id) + LENGTH(payload)) FROM (SELECT * FROM {0}.a_items UNION ALL \
             SELECT * FROM {0}.b_items) x",
            quote(&r.database)
        ))
        .await
        .unwrap();
    assert_eq!(
        counted,
        [exact.to_string()],
        "the bytes in the lane are the quota"
    );
    m.drop_lane_database(&db, &lane, &r.database).await.unwrap();

    // One byte less: the third row of b_items no longer fits.
    let lane = common::lane("less-");
    let r = m
        .clone_schema(
            &db,
            &lane,
            Some(Sample {
                rows: 100,
                bytes: exact - 1,
            }),
        )
        .await
        .unwrap();
    assert_eq!((r.rows, r.bytes), (14, exact - size(3)), "{r:?}");
    m.drop_lane_database(&db, &lane, &r.database).await.unwrap();

    // A quota of zero is refused before anything is made.
    let lane = common::lane("zero-");
    let err = m
        .clone_schema(&db, &lane, Some(Sample { rows: 10, bytes: 0 }))
        .await
        .unwrap_err();
    assert!(matches!(err, DataError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("above zero"), "{err}");
    assert!(
        !m.database_exists(&format!("{db}__lane_{}", lane.as_str().replace('-', "_")))
            .await
            .unwrap()
    );
    assert_eq!(checksums(&m, &db).await, before, "baseline untouched");
    m.execute(&[&format!("DROP DATABASE {q}")]).await.unwrap();
    m.close().await;
}

#[tokio::test]
async fn the_sample_keeps_foreign_keys_consistent() {
    let m = Mysql::connect(common::mysql_url()).await.unwrap();
    let db = common::unique("lt_fk_");
    let q = quote(&db);
    // Tables in name order: children, grandkids, parents. Child i belongs to parent 13 - i;
    // grandkid i to child i.
    let mut stmts = vec![
        format!("CREATE DATABASE {q}"),
        format!("CREATE TABLE {q}.parents (id INT PRIMARY KEY)"),
        format!(
            "CREATE TABLE {q}.children (id INT PRIMARY KEY, parent_id INT, \
             FOREIGN KEY (parent_id) REFERENCES parents (id))"
        ),
        format!(
            "CREATE TABLE {q}.grandkids (id INT PRIMARY KEY, child_id INT, \
             FOREIGN KEY (child_id) REFERENCES children (id))"
        ),
    ];
    for i in 1..=12 {
        stmts.push(format!("INSERT INTO {q}.parents VALUES ({i})"));
    }
    for i in 1..=12 {
        stmts.push(format!("INSERT INTO {q}.children VALUES ({i}, {})", 13 - i));
    }
    for i in 1..=12 {
        stmts.push(format!("INSERT INTO {q}.grandkids VALUES ({i}, {i})"));
    }
    let refs: Vec<&str> = stmts.iter().map(String::as_str).collect();
    m.execute(&refs).await.unwrap();
    let before = checksums(&m, &db).await;

    // 4 rows each: parents 1..=4; children 1..=4 point at parents 12..=9 (outside: dropped);
    // grandkids 1..=4 point at those children (dropped in the next round).
    let lane = common::lane("fk-");
    let r = m
        .clone_schema(
            &db,
            &lane,
            Some(Sample {
                rows: 4,
                bytes: 1 << 20,
            }),
        )
        .await
        .unwrap();
    assert_eq!((r.rows, r.dropped_for_foreign_keys), (4, 8), "{r:?}");
    for t in ["children", "grandkids"] {
        let n = m
            .column(&format!("SELECT COUNT(*) FROM {}.{t}", quote(&r.database)))
            .await
            .unwrap();
        assert_eq!(n, ["0"], "{t}");
    }
    m.drop_lane_database(&db, &lane, &r.database).await.unwrap();

    // Everything fits: nothing dropped.
    let r = m
        .clone_schema(
            &db,
            &lane,
            Some(Sample {
                rows: 12,
                bytes: 1 << 20,
            }),
        )
        .await
        .unwrap();
    assert_eq!((r.rows, r.dropped_for_foreign_keys), (36, 0), "{r:?}");
    m.drop_lane_database(&db, &lane, &r.database).await.unwrap();
    assert_eq!(checksums(&m, &db).await, before, "baseline untouched");
    m.execute(&[&format!("DROP DATABASE {q}")]).await.unwrap();
    m.close().await;
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    // Unreachable: a port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = Mysql::connect(&format!("mysql://lane:lane@127.0.0.1:{port}/x"))
        .await
        .err()
        .expect("unreachable");
    assert!(matches!(err, DataError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );

    // Wrong password: named as such, the password not shown.
    let url = common::mysql_url().replace("lane:lane@", "lane:not-the-password@");
    let err = Mysql::connect(&url).await.err().expect("refused");
    assert!(matches!(err, DataError::Auth { .. }), "{err}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");

    let m = Mysql::connect(common::mysql_url()).await.unwrap();
    let lane = common::lane("bad-");
    // Missing baseline.
    let missing = common::unique("lt_missing_");
    let err = m.clone_schema(&missing, &lane, None).await.unwrap_err();
    assert!(matches!(err, DataError::MissingBaseline { .. }), "{err}");
    assert!(err.to_string().contains(&missing), "{err}");
    // SQL metacharacters: refused before any SQL is sent.
    for bad in ["x`; DROP DATABASE mysql; --", "a'b", "a b", "a.b", "x;y"] {
        let err = m.clone_schema(bad, &lane, None).await.unwrap_err();
        assert!(matches!(err, DataError::Invalid(_)), "{bad}: {err}");
    }
    assert!(m.database_exists("mysql").await.unwrap());
    m.close().await;
}
