//! A lane's MySQL database: `<db>__lane_<id>`, with baseline's schema and an optional bounded
//! sample of its rows.
//!
//! What is cloned: every base table as `SHOW CREATE TABLE` gives it (columns with defaults,
//! indexes, keys, foreign keys, table options), then the sample rows, then views and triggers
//! (their `DEFINER` dropped so the lane's user owns them; references qualified with the baseline
//! database point at the lane database instead). Stored routines and events are not cloned.
//!
//! The sample: tables in name order, each in primary-key order, at most `rows` rows per table,
//! until the first row that would take the total past `bytes`. A row's size is the sum of its
//! values' lengths as MySQL's text protocol sends them (NULL counts 0), so the quota is an exact
//! bound on what is read and written. Rows are inserted with foreign key checks off; afterwards
//! every row whose foreign key points at a row outside the sample is deleted (repeatedly, until
//! none is left), so the lane's data satisfies its foreign keys.

use std::time::Duration;

use lane_core::LaneId;
use lane_core::data::{Sample, check_mysql_ident, mysql_database, redact};
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, Row, Value};
use serde::Serialize;

use crate::error::{DataError, Result};

const WHAT: &str = "MySQL";
/// How long connecting may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Quotes an identifier for MySQL: backticks, with any backtick inside doubled.
pub fn quote(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}

/// A connection pool to one MySQL server (the database in the address is not used: every
/// statement names its database).
pub struct Mysql {
    pool: Pool,
    address: String,
}

/// What [`Mysql::clone_schema`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloneReport {
    /// The lane's database.
    pub database: String,
    /// `false` when the database existed already (a lane is provisioned once; nothing was done).
    pub created: bool,
    pub tables: usize,
    pub views: usize,
    pub triggers: usize,
    /// Rows in the lane database after the sample (those dropped for foreign keys not counted).
    pub rows: u64,
    /// Bytes of row data read from baseline and inserted (never more than the quota).
    pub bytes: u64,
    /// Rows deleted because their foreign keys pointed outside the sample.
    pub dropped_for_foreign_keys: u64,
    /// The table whose next row would have passed the byte quota, when the quota ended the sample.
    pub quota_reached_at: Option<String>,
}

impl Mysql {
    /// Connects to the server of `url` (`mysql://user:password@host:port/db`) and checks that it
    /// answers and takes the credentials.
    pub async fn connect(url: &str) -> Result<Mysql> {
        let address = redact(url);
        let opts = Opts::from_url(url)
            .map_err(|e| DataError::Invalid(format!("`{address}` is not a MySQL address: {e}")))?;
        let opts = OptsBuilder::from_opts(opts).db_name(None::<String>);
        let pool = Pool::new(opts);
        let mysql = Mysql { pool, address };
        let mut conn = mysql.conn().await?;
        conn.ping().await.map_err(|e| mysql.error(e))?;
        Ok(mysql)
    }

    /// The server's address, without the password.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub(crate) async fn conn(&self) -> Result<Conn> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.pool.get_conn()).await {
            Ok(r) => r.map_err(|e| self.error(e)),
            Err(_) => Err(DataError::Unreachable {
                what: WHAT,
                address: self.address.clone(),
                reason: format!("no answer in {}s", CONNECT_TIMEOUT.as_secs()),
            }),
        }
    }

    pub(crate) fn error(&self, e: mysql_async::Error) -> DataError {
        error_at(&self.address, e)
    }

    /// Whether database `name` exists.
    pub async fn database_exists(&self, name: &str) -> Result<bool> {
        let mut conn = self.conn().await?;
        self.exists(&mut conn, name).await
    }

    async fn exists(&self, conn: &mut Conn, name: &str) -> Result<bool> {
        let found: Option<String> = conn
            .exec_first(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                (name,),
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(found.is_some())
    }

    /// Creates lane `lane`'s database for baseline database `baseline` and clones the schema
    /// (and the sample, when given) into it. Does nothing when the lane's database exists. On an
    /// error the half-made lane database is dropped again.
    pub async fn clone_schema(
        &self,
        baseline: &str,
        lane: &LaneId,
        sample: Option<Sample>,
    ) -> Result<CloneReport> {
        check_mysql_ident(baseline).map_err(DataError::Invalid)?;
        let target = mysql_database("", baseline, lane).map_err(|e| {
            DataError::Invalid(format!(
                "{} (baseline database `{baseline}`, lane `{lane}`)",
                e.to_string().trim_start_matches("data binding ``: ")
            ))
        })?;
        if let Some(s) = sample
            && (s.rows == 0 || s.bytes == 0)
        {
            return Err(DataError::Invalid(format!(
                "a sample needs a row limit and a byte quota above zero (rows {}, bytes {}); \
                 leave the sample out to clone the schema only",
                s.rows, s.bytes
            )));
        }
        let mut conn = self.conn().await?;
        let charset: Option<(String, String)> = conn
            .exec_first(
                "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME \
                 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                (baseline,),
            )
            .await
            .map_err(|e| self.error(e))?;
        let Some((charset, collation)) = charset else {
            return Err(DataError::MissingBaseline {
                database: baseline.to_owned(),
                address: self.address.clone(),
            });
        };
        let mut report = CloneReport {
            database: target.clone(),
            created: false,
            tables: 0,
            views: 0,
            triggers: 0,
            rows: 0,
            bytes: 0,
            dropped_for_foreign_keys: 0,
            quota_reached_at: None,
        };
        if self.exists(&mut conn, &target).await? {
            return Ok(report);
        }
        for name in [&charset, &collation] {
            if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(DataError::Invalid(format!(
                    "baseline `{baseline}` has a character set or collation lane does not \
                     recognise: `{name}`"
                )));
            }
        }
        conn.query_drop(format!(
            "CREATE DATABASE {} CHARACTER SET {charset} COLLATE {collation}",
            quote(&target)
        ))
        .await
        .map_err(|e| self.error(e))?;
        report.created = true;
        let filled = self
            .fill(&mut conn, baseline, &target, sample, &mut report)
            .await;
        // The connection's session was changed (current database, foreign key checks, sql_mode):
        // it does not go back to the pool.
        let _ = conn.disconnect().await;
        match filled {
            Ok(()) => Ok(report),
            Err(e) => {
                // Ours: made a moment ago under the lane's own name.
                if let Ok(mut c) = self.conn().await {
                    let _ = c
                        .query_drop(format!("DROP DATABASE IF EXISTS {}", quote(&target)))
                        .await;
                }
                Err(e)
            }
        }
    }

    async fn fill(
        &self,
        conn: &mut Conn,
        baseline: &str,
        target: &str,
        sample: Option<Sample>,
        report: &mut CloneReport,
    ) -> Result<()> {
        let err = |e| self.error(e);
        // Tables in any order, rows with their original auto-increment values.
        conn.query_drop(
            "SET SESSION foreign_key_checks = 0, SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'",
        )
        .await
        .map_err(err)?;
        conn.query_drop(format!("USE {}", quote(target)))
            .await
            .map_err(err)?;
        let tables: Vec<String> = conn
            .exec(
                "SELECT TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
                (baseline,),
            )
            .await
            .map_err(err)?;
        for table in &tables {
            let ddl: Option<(String, String)> = conn
                .query_first(format!(
                    "SHOW CREATE TABLE {}.{}",
                    quote(baseline),
                    quote(table)
                ))
                .await
                .map_err(err)?;
            let (_, ddl) = ddl.ok_or_else(|| DataError::Server {
                what: WHAT,
                address: self.address.clone(),
                message: format!("SHOW CREATE TABLE {table} answered nothing"),
            })?;
            conn.query_drop(ddl).await.map_err(err)?;
            report.tables += 1;
        }
        if let Some(sample) = sample {
            self.copy_sample(conn, baseline, target, &tables, sample, report)
                .await?;
        }
        self.copy_views(conn, baseline, target, report).await?;
        self.copy_triggers(conn, baseline, target, report).await?;
        Ok(())
    }

    async fn copy_sample(
        &self,
        conn: &mut Conn,
        baseline: &str,
        target: &str,
        tables: &[String],
        sample: Sample,
        report: &mut CloneReport,
    ) -> Result<()> {
        let err = |e| self.error(e);
        let mut used: u64 = 0;
        'tables: for table in tables {
            let columns: Vec<String> = conn
                .exec(
                    "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
                     AND EXTRA NOT LIKE '%VIRTUAL GENERATED%' \
                     AND EXTRA NOT LIKE '%STORED GENERATED%' \
                     AND EXTRA NOT LIKE '%PERSISTENT GENERATED%' \
                     ORDER BY ORDINAL_POSITION",
                    (baseline, table),
                )
                .await
                .map_err(err)?;
            if columns.is_empty() {
                continue;
            }
            let key: Vec<String> = conn
                .exec(
                    "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
                     ORDER BY ORDINAL_POSITION",
                    (baseline, table),
                )
                .await
                .map_err(err)?;
            let list = columns
                .iter()
                .map(|c| quote(c))
                .collect::<Vec<_>>()
                .join(", ");
            let order = if key.is_empty() {
                String::new()
            } else {
                format!(
                    " ORDER BY {}",
                    key.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
                )
            };
            let rows: Vec<Row> = conn
                .query(format!(
                    "SELECT {list} FROM {}.{}{order} LIMIT {}",
                    quote(baseline),
                    quote(table),
                    sample.rows
                ))
                .await
                .map_err(err)?;
            let mut take = Vec::with_capacity(rows.len());
            let mut stop = false;
            for row in rows {
                let values = row.unwrap();
                let size: u64 = values.iter().map(value_size).sum();
                if used + size > sample.bytes {
                    stop = true;
                    break;
                }
                used += size;
                take.push(values);
            }
            if !take.is_empty() {
                let marks = vec!["?"; columns.len()].join(", ");
                let n = take.len() as u64;
                conn.exec_batch(
                    format!(
                        "INSERT INTO {}.{} ({list}) VALUES ({marks})",
                        quote(target),
                        quote(table)
                    ),
                    take,
                )
                .await
                .map_err(err)?;
                report.rows += n;
            }
            if stop {
                report.quota_reached_at = Some(table.clone());
                break 'tables;
            }
        }
        report.bytes = used;
        report.dropped_for_foreign_keys = self.drop_dangling(conn, baseline, target).await?;
        report.rows -= report.dropped_for_foreign_keys;
        Ok(())
    }

    /// Deletes rows of `target` whose foreign keys (as baseline declares them, within the
    /// database) point at no row, until there are none.
    async fn drop_dangling(&self, conn: &mut Conn, baseline: &str, target: &str) -> Result<u64> {
        let err = |e| self.error(e);
        let fks: Vec<(String, String, String, String, String)> = conn
            .exec(
                "SELECT CONSTRAINT_NAME, TABLE_NAME, COLUMN_NAME, REFERENCED_TABLE_NAME, \
                 REFERENCED_COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = ? AND REFERENCED_TABLE_SCHEMA = ? \
                 ORDER BY TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION",
                (baseline, baseline),
            )
            .await
            .map_err(err)?;
        let mut keys: Vec<ForeignKey> = Vec::new();
        for (constraint, table, column, parent, parent_column) in fks {
            match keys.last_mut() {
                Some((c, t, _, cols)) if *c == constraint && *t == table => {
                    cols.push((column, parent_column))
                }
                _ => keys.push((constraint, table, parent, vec![(column, parent_column)])),
            }
        }
        let db = quote(target);
        let mut dropped = 0;
        for _ in 0..=keys.len() {
            let mut this_round = 0;
            for (_, child, parent, cols) in &keys {
                let on = cols
                    .iter()
                    .map(|(c, p)| format!("p.{} = c.{}", quote(p), quote(c)))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                let set = cols
                    .iter()
                    .map(|(c, _)| format!("c.{} IS NOT NULL", quote(c)))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                let missing = format!("p.{} IS NULL", quote(&cols[0].1));
                let result = conn
                    .query_iter(format!(
                        "DELETE c FROM {db}.{} c LEFT JOIN {db}.{} p ON {on} \
                         WHERE {set} AND {missing}",
                        quote(child),
                        quote(parent)
                    ))
                    .await
                    .map_err(err)?;
                let n = result.affected_rows();
                result.drop_result().await.map_err(err)?;
                this_round += n;
            }
            dropped += this_round;
            if this_round == 0 {
                break;
            }
        }
        Ok(dropped)
    }

    async fn copy_views(
        &self,
        conn: &mut Conn,
        baseline: &str,
        target: &str,
        report: &mut CloneReport,
    ) -> Result<()> {
        let err = |e| self.error(e);
        let views: Vec<String> = conn
            .exec(
                "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? \
                 ORDER BY TABLE_NAME",
                (baseline,),
            )
            .await
            .map_err(err)?;
        let mut pending = Vec::new();
        for view in &views {
            let row: Option<Row> = conn
                .query_first(format!(
                    "SHOW CREATE VIEW {}.{}",
                    quote(baseline),
                    quote(view)
                ))
                .await
                .map_err(err)?;
            let ddl: Option<String> = row.and_then(|r| r.get(1));
            let ddl = ddl.ok_or_else(|| DataError::Server {
                what: WHAT,
                address: self.address.clone(),
                message: format!("SHOW CREATE VIEW {view} answered nothing"),
            })?;
            pending.push((
                view.clone(),
                requalify(&strip_definer(&ddl), baseline, target),
            ));
        }
        // A view may read another view: create what can be created until nothing changes.
        while !pending.is_empty() {
            let mut failed = Vec::new();
            let mut last = None;
            let before = pending.len();
            for (view, ddl) in pending {
                match conn.query_drop(&ddl).await {
                    Ok(()) => report.views += 1,
                    Err(e) => {
                        last = Some(self.error(e));
                        failed.push((view, ddl));
                    }
                }
            }
            if failed.len() == before {
                return Err(last.expect("a failure"));
            }
            pending = failed;
        }
        Ok(())
    }

    async fn copy_triggers(
        &self,
        conn: &mut Conn,
        baseline: &str,
        target: &str,
        report: &mut CloneReport,
    ) -> Result<()> {
        let err = |e| self.error(e);
        let triggers: Vec<String> = conn
            .exec(
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? \
                 ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
                (baseline,),
            )
            .await
            .map_err(err)?;
        for trigger in &triggers {
            let row: Option<Row> = conn
                .query_first(format!(
                    "SHOW CREATE TRIGGER {}.{}",
                    quote(baseline),
                    quote(trigger)
                ))
                .await
                .map_err(err)?;
            let (mode, ddl): (Option<String>, Option<String>) = match row {
                Some(r) => (r.get(1), r.get(2)),
                None => (None, None),
            };
            let ddl = ddl.ok_or_else(|| DataError::Server {
                what: WHAT,
                address: self.address.clone(),
                message: format!("SHOW CREATE TRIGGER {trigger} answered nothing"),
            })?;
            // The trigger runs under the sql_mode it was created with.
            if let Some(mode) = mode
                && mode
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b',')
            {
                conn.query_drop(format!("SET SESSION sql_mode = '{mode}'"))
                    .await
                    .map_err(err)?;
            }
            conn.query_drop(requalify(&strip_definer(&ddl), baseline, target))
                .await
                .map_err(err)?;
            report.triggers += 1;
        }
        Ok(())
    }

    /// Drops lane `lane`'s database for baseline database `baseline`, after the guard
    /// ([`crate::teardown::check_mysql_drop`]) agrees it is the lane's own. `Ok(false)`: there
    /// was none.
    pub async fn drop_lane_database(
        &self,
        baseline: &str,
        lane: &LaneId,
        database: &str,
    ) -> Result<bool> {
        crate::teardown::check_mysql_drop(baseline, lane, database)?;
        let mut conn = self.conn().await?;
        if !self.exists(&mut conn, database).await? {
            return Ok(false);
        }
        conn.query_drop(format!("DROP DATABASE {}", quote(database)))
            .await
            .map_err(|e| self.error(e))?;
        Ok(true)
    }

    /// Lane databases on this server (`<db>__lane_<id>` for any `<db>`), with their sizes in bytes
    /// (data and indexes, as information_schema estimates them).
    pub async fn lane_databases(&self) -> Result<Vec<(String, u64)>> {
        let mut conn = self.conn().await?;
        conn.query(
            "SELECT s.SCHEMA_NAME, CAST(COALESCE(SUM(t.DATA_LENGTH + t.INDEX_LENGTH), 0) AS UNSIGNED) \
             FROM information_schema.SCHEMATA s LEFT JOIN information_schema.TABLES t \
             ON t.TABLE_SCHEMA = s.SCHEMA_NAME WHERE s.SCHEMA_NAME LIKE '%\\_\\_lane\\_%' \
             GROUP BY s.SCHEMA_NAME ORDER BY s.SCHEMA_NAME",
        )
        .await
        .map_err(|e| self.error(e))
    }

    /// Runs statements on the server (for tests and tools that set up baselines).
    pub async fn execute(&self, statements: &[&str]) -> Result<()> {
        let mut conn = self.conn().await?;
        for s in statements {
            conn.query_drop(*s).await.map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// The first column of every row of `query`, as text (NULL as `NULL`).
    pub async fn column(&self, query: &str) -> Result<Vec<String>> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = conn.query(query).await.map_err(|e| self.error(e))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let v: Option<Value> = r.get(0);
                match v {
                    None | Some(Value::NULL) => "NULL".into(),
                    Some(Value::Bytes(b)) => String::from_utf8_lossy(&b).into_owned(),
                    Some(other) => other.as_sql(true),
                }
            })
            .collect())
    }

    /// Column `col` of the first row of `query` (a `SHOW ...` statement, say), as text.
    pub async fn show(&self, query: &str, col: usize) -> Result<String> {
        let mut conn = self.conn().await?;
        let row: Option<Row> = conn.query_first(query).await.map_err(|e| self.error(e))?;
        let v: Option<Value> = row.and_then(|r| r.get(col));
        match v {
            Some(Value::Bytes(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Some(Value::NULL) | None => Err(self.server_msg(format!("`{query}` answered nothing"))),
            Some(other) => Ok(other.as_sql(true)),
        }
    }

    pub(crate) fn server_msg(&self, message: String) -> DataError {
        DataError::Server {
            what: WHAT,
            address: self.address.clone(),
            message,
        }
    }

    /// Closes the pool's connections.
    pub async fn close(self) {
        let _ = self.pool.disconnect().await;
    }
}

/// A client error as lane's, for the server at `address` (without the password).
pub(crate) fn error_at(address: &str, e: mysql_async::Error) -> DataError {
    let address = address.to_owned();
    match e {
        mysql_async::Error::Io(io) => DataError::Unreachable {
            what: WHAT,
            address,
            reason: io.to_string(),
        },
        // ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR, ER_ACCESS_DENIED_NO_PASSWORD_ERROR
        mysql_async::Error::Server(s) if matches!(s.code, 1044 | 1045 | 1698) => DataError::Auth {
            what: WHAT,
            address,
            reason: s.message,
        },
        other => DataError::Server {
            what: WHAT,
            address,
            message: other.to_string(),
        },
    }
}

/// (constraint, child table, parent table, [(child column, parent column)])
type ForeignKey = (String, String, String, Vec<(String, String)>);

/// A value's size as the text protocol sends it.
fn value_size(v: &Value) -> u64 {
    match v {
        Value::NULL => 0,
        Value::Bytes(b) => b.len() as u64,
        other => other.as_sql(true).len() as u64,
    }
}

/// Removes `DEFINER=user@host ` from a `CREATE ...` statement.
pub fn strip_definer(ddl: &str) -> String {
    let Some(start) = ddl.find(" DEFINER=") else {
        return ddl.to_owned();
    };
    let rest = &ddl[start + " DEFINER=".len()..];
    // `user`@`host` (either part may be quoted with backticks or quotes, or bare).
    let mut i = 0;
    let bytes = rest.as_bytes();
    let mut quote_char: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote_char {
            Some(q) if b == q => quote_char = None,
            Some(_) => {}
            None if b == b'`' || b == b'\'' || b == b'"' => quote_char = Some(b),
            None if b == b' ' => break,
            None => {}
        }
        i += 1;
    }
    format!("{}{}", &ddl[..start], &rest[i..])
}

/// Points references qualified with database `from` (`` `from`. `` or a bare `from.`) at `to`.
/// Text inside string literals is left alone.
pub fn requalify(sql: &str, from: &str, to: &str) -> String {
    let quoted = format!("{}.", quote(from));
    let bare = format!("{from}.");
    let mut out = String::with_capacity(sql.len());
    let bytes = sql.as_bytes();
    let mut i = 0;
    let mut in_string: Option<u8> = None;
    while i < sql.len() {
        let b = bytes[i];
        if let Some(q) = in_string {
            if b == b'\\' && i + 1 < sql.len() {
                out.push_str(&sql[i..i + 2]);
                i += 2;
                continue;
            }
            if b == q {
                in_string = None;
            }
            out.push(b as char);
            i += 1;
            continue;
        }
        if b == b'\'' || b == b'"' {
            in_string = Some(b);
            out.push(b as char);
            i += 1;
            continue;
        }
        let prev_ident = i > 0 && {
            let p = bytes[i - 1];
            p.is_ascii_alphanumeric() || p == b'_' || p == b'.' || p == b'$'
        };
        if !prev_ident && sql[i..].starts_with(&quoted) {
            out.push_str(&quote(to));
            out.push('.');
            i += quoted.len();
        } else if !prev_ident && b != b'`' && sql[i..].starts_with(&bare) {
            out.push_str(&quote(to));
            out.push('.');
            i += bare.len();
        } else {
            let ch = sql[i..].chars().next().expect("a char");
            if ch == '`' {
                // Copy a quoted identifier whole.
                let end = sql[i + 1..].find('`').map_or(sql.len(), |e| i + 1 + e + 1);
                out.push_str(&sql[i..end]);
                i = end;
                continue;
            }
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("orders"), "`orders`");
        assert_eq!(quote("a`b"), "`a``b`");
    }

    #[test]
    fn definers_are_stripped() {
        assert_eq!(
            strip_definer(
                "CREATE ALGORITHM=UNDEFINED DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW `v` AS select 1"
            ),
            "CREATE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `v` AS select 1"
        );
        assert_eq!(
            strip_definer(
                "CREATE DEFINER=`la ne`@`%` TRIGGER t BEFORE INSERT ON x FOR EACH ROW SET @a = 1"
            ),
            "CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW SET @a = 1"
        );
        assert_eq!(
            strip_definer("CREATE VIEW v AS select 1"),
            "CREATE VIEW v AS select 1"
        );
    }

    #[test]
    fn references_are_requalified() {
        assert_eq!(
            requalify(
                "select `shop`.`t`.`id` AS `id` from `shop`.`t` where x = 'shop.t' and shop.u.a = 1 and myshop.t = 2",
                "shop",
                "shop__lane_x"
            ),
            "select `shop__lane_x`.`t`.`id` AS `id` from `shop__lane_x`.`t` where x = 'shop.t' and `shop__lane_x`.u.a = 1 and myshop.t = 2"
        );
        // A column or table that happens to be called like the database is not a qualifier.
        assert_eq!(
            requalify("select `x`.`shop` from t", "shop", "l"),
            "select `x`.`shop` from t"
        );
    }
}
