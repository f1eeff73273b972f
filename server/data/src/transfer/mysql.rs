//! MySQL in a lane data file: per table its `SHOW CREATE TABLE` and its rows (text-protocol
//! values, read in one consistent snapshot), then views and triggers.
//!
//! An import builds the tables in the staging database `<lane db>$imp` (no lane id or database
//! lane makes contains `$`, so the name is never another lane's or baseline's), loads the rows
//! there, and only when the whole file has been read swaps them in with one statement batch:
//! the lane database's triggers and views are dropped and one `RENAME TABLE` moves every live
//! table to `<lane db>$old` and every staged table into the lane database (MySQL runs a
//! `RENAME TABLE` of several tables atomically; a table with triggers cannot move to another
//! database, hence the drop just before, in the same batch). The file's views and triggers are
//! then created, and both staging databases dropped. Staging databases left by a killed import
//! are dropped by the next import into the lane and by the lane's teardown.
//!
//! Statements taken from the file (table, view and trigger definitions) are checked to create
//! exactly the object the frame names, and run as prepared statements, which the server parses
//! as one statement: a file cannot smuggle a second one in.

use lane_core::LaneId;
use lane_core::data::{DataSpec, mysql_database};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

use super::format::{
    self, Frame, Object, Section, SectionEnd, TAG_MYSQL_ROWS, TAG_MYSQL_TABLE, TAG_MYSQL_TRIGGER,
    TAG_MYSQL_VIEW, Table, Writer,
};
use super::{Cancel, OnProgress, Progress};
use crate::error::{DataError, Result};
use crate::mysql::{Mysql, quote, requalify, strip_definer};

/// Rows per rows frame at most, and bytes (roughly).
const FRAME_ROWS: usize = 20_000;
const FRAME_BYTES: usize = 1 << 20;
/// Values per INSERT statement at most (the protocol allows 65535 placeholders).
/// The size of an INSERT statement (well below the default `max_allowed_packet` of 16 MiB).
const STATEMENT_BYTES: usize = 1 << 20;
/// Connections loading rows frames into the staging tables at once.
const LOADERS: usize = 3;
const SESSION: &str = "SET SESSION foreign_key_checks = 0, SESSION unique_checks = 0, \
     SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO', SESSION time_zone = '+00:00'";
const MAX_IDENT: usize = 64;

/// The staging databases of lane database `live`: (staged import, old tables being swapped out).
pub fn staging_names(live: &str) -> Result<(String, String)> {
    let names = (format!("{live}$imp"), format!("{live}$old"));
    if names.0.chars().count() > MAX_IDENT {
        return Err(DataError::Invalid(format!(
            "the lane database `{live}` is too long to stage an import next to it (`{}` passes \
             MySQL's {MAX_IDENT} characters)",
            names.0
        )));
    }
    Ok(names)
}

/// The guard for staging databases: `name` must be one of the two staging names of lane
/// `lane`'s database for `baseline`.
pub fn check_staging(baseline: &str, lane: &LaneId, name: &str) -> Result<()> {
    let own = mysql_database("", baseline, lane)
        .map_err(|e| DataError::Guard(format!("`{name}`: {e}")))?;
    let (a, b) = staging_names(&own)?;
    if name == a || name == b {
        Ok(())
    } else {
        Err(DataError::Guard(format!(
            "`{name}` is not one of lane `{lane}`'s staging databases (`{a}`, `{b}`)"
        )))
    }
}

/// Drops lane `lane`'s staging databases for `baseline` (leftovers of an interrupted import).
/// Returns how many there were.
pub async fn drop_staging(m: &Mysql, baseline: &str, lane: &LaneId) -> Result<u32> {
    let own = mysql_database("", baseline, lane).map_err(|e| DataError::Invalid(e.to_string()))?;
    let (a, b) = staging_names(&own)?;
    let mut conn = m.conn().await?;
    let mut dropped = 0;
    for name in [a, b] {
        check_staging(baseline, lane, &name)?;
        if m.database_exists(&name).await? {
            conn.query_drop(format!("DROP DATABASE {}", quote(&name)))
                .await
                .map_err(|e| m.error(e))?;
            dropped += 1;
        }
    }
    Ok(dropped)
}

/// The lane database `target` of binding `spec`, checked to be lane `lane`'s own.
fn own_database(lane: &LaneId, baseline: &str, target: &str) -> Result<()> {
    crate::teardown::check_mysql_drop(baseline, lane, target).map_err(|_| {
        DataError::Guard(format!(
            "`{target}` is not lane `{lane}`'s database for `{baseline}`; nothing was read or changed"
        ))
    })
}

/// Writes lane database `target`'s section.
pub async fn export<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut Writer<W>,
    lane: &LaneId,
    spec: &DataSpec,
    baseline: &str,
    target: &str,
    progress: OnProgress<'_>,
    cancel: &Cancel,
) -> Result<SectionEnd> {
    own_database(lane, baseline, target)?;
    let m = Mysql::connect(&spec.address).await?;
    let r = export_with(w, &m, &spec.name, target, progress, cancel).await;
    m.close().await;
    r
}

/// Writes database `db`'s section (tables, rows, views, triggers) as binding `binding`.
pub async fn export_with<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut Writer<W>,
    m: &Mysql,
    binding: &str,
    db: &str,
    progress: OnProgress<'_>,
    cancel: &Cancel,
) -> Result<SectionEnd> {
    let mut conn = m.conn().await?;
    let r = export_conn(w, m, &mut conn, binding, db, progress, cancel).await;
    let _ = conn.disconnect().await;
    r
}

async fn export_conn<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut Writer<W>,
    m: &Mysql,
    conn: &mut Conn,
    binding: &str,
    db: &str,
    progress: OnProgress<'_>,
    cancel: &Cancel,
) -> Result<SectionEnd> {
    let err = |e| m.error(e);
    let charset: Option<(String, String)> = conn
        .exec_first(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME \
             FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (db,),
        )
        .await
        .map_err(err)?;
    let Some(charset) = charset else {
        return Err(DataError::Invalid(format!(
            "binding `{binding}`: the database `{db}` does not exist on {} (deploy into the lane \
             first)",
            m.address()
        )));
    };
    conn.query_drop("SET SESSION time_zone = '+00:00'")
        .await
        .map_err(err)?;
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(err)?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .await
        .map_err(err)?;
    let tables: Vec<(String, u64)> = conn
        .exec(
            "SELECT TABLE_NAME, CAST(COALESCE(TABLE_ROWS, 0) AS UNSIGNED) \
             FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
            (db,),
        )
        .await
        .map_err(err)?;
    let total: u64 = tables.iter().map(|t| t.1).sum();
    w.json(
        format::TAG_SECTION,
        &Section {
            binding: binding.to_owned(),
            kind: "mysql".into(),
            source: db.to_owned(),
            charset: Some(charset),
        },
    )
    .await?;
    let mut rows_done: u64 = 0;
    let mut objects = 0;
    let q = quote(db);
    for (table, _) in &tables {
        cancel.check()?;
        let row: Option<(String, String)> = conn
            .query_first(format!("SHOW CREATE TABLE {q}.{}", quote(table)))
            .await
            .map_err(err)?;
        let (_, ddl) =
            row.ok_or_else(|| m.server_msg(format!("SHOW CREATE TABLE {table}: nothing")))?;
        let columns: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
                 AND EXTRA NOT LIKE '%VIRTUAL GENERATED%' \
                 AND EXTRA NOT LIKE '%STORED GENERATED%' \
                 AND EXTRA NOT LIKE '%PERSISTENT GENERATED%' \
                 ORDER BY ORDINAL_POSITION",
                (db, table),
            )
            .await
            .map_err(err)?;
        w.json(
            TAG_MYSQL_TABLE,
            &Table {
                name: table.clone(),
                ddl,
                columns: columns.clone(),
            },
        )
        .await?;
        objects += 1;
        if columns.is_empty() {
            continue;
        }
        let list = columns
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ");
        // Rows are read and encoded while the previous frame is written.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(Vec<u8>, u32)>(4);
        let sql = format!("SELECT {list} FROM {q}.{}", quote(table));
        let reader = &mut *conn;
        let produce = async move {
            let tx = tx;
            let mut result = reader.query_iter(sql).await.map_err(err)?;
            let mut enc = format::RowsEncoder::new();
            while let Some(row) = result.next().await.map_err(err)? {
                for v in row.unwrap() {
                    match v {
                        Value::NULL => enc.value(None),
                        Value::Bytes(b) => enc.value(Some(&b)),
                        other => enc.value(Some(other.as_sql(true).as_bytes())),
                    }
                }
                enc.end_row();
                if (enc.rows() as usize >= FRAME_ROWS || enc.bytes() >= FRAME_BYTES)
                    && (cancel.is_cancelled() || tx.send(enc.take()).await.is_err())
                {
                    // Cancelled, or the writer failed (its error is the one reported).
                    return Ok::<bool, DataError>(false);
                }
            }
            if enc.rows() > 0 && tx.send(enc.take()).await.is_err() {
                return Ok(false);
            }
            Ok(true)
        };
        let consume = async {
            while let Some((payload, n)) = rx.recv().await {
                w.frame(TAG_MYSQL_ROWS, &payload).await?;
                rows_done += u64::from(n);
                progress(&Progress {
                    binding: binding.to_owned(),
                    step: "export",
                    done: rows_done,
                    total: total.max(rows_done),
                    unit: "rows",
                });
            }
            Ok::<(), DataError>(())
        };
        let (produced, consumed) = tokio::join!(produce, consume);
        consumed?;
        if !produced? {
            cancel.check()?;
            return Err(DataError::Cancelled);
        }
    }
    let views: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? \
             ORDER BY TABLE_NAME",
            (db,),
        )
        .await
        .map_err(err)?;
    for view in views {
        let row: Option<Row> = conn
            .query_first(format!("SHOW CREATE VIEW {q}.{}", quote(&view)))
            .await
            .map_err(err)?;
        let ddl: String = row
            .and_then(|r| r.get(1))
            .ok_or_else(|| m.server_msg(format!("SHOW CREATE VIEW {view}: nothing")))?;
        w.json(
            TAG_MYSQL_VIEW,
            &Object {
                name: view,
                ddl: strip_definer(&ddl),
                sql_mode: None,
            },
        )
        .await?;
        objects += 1;
    }
    let triggers: Vec<String> = conn
        .exec(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? \
             ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
            (db,),
        )
        .await
        .map_err(err)?;
    for trigger in triggers {
        let row: Option<Row> = conn
            .query_first(format!("SHOW CREATE TRIGGER {q}.{}", quote(&trigger)))
            .await
            .map_err(err)?;
        let (mode, ddl): (Option<String>, Option<String>) = match row {
            Some(r) => (r.get(1), r.get(2)),
            None => (None, None),
        };
        let ddl =
            ddl.ok_or_else(|| m.server_msg(format!("SHOW CREATE TRIGGER {trigger}: nothing")))?;
        w.json(
            TAG_MYSQL_TRIGGER,
            &Object {
                name: trigger,
                ddl: strip_definer(&ddl),
                sql_mode: mode,
            },
        )
        .await?;
        objects += 1;
    }
    conn.query_drop("COMMIT").await.map_err(err)?;
    let end = SectionEnd {
        binding: binding.to_owned(),
        items: rows_done,
        objects,
    };
    w.json(format::TAG_SECTION_END, &end).await?;
    Ok(end)
}

/// Skips spaces and `/* */` comments.
fn skip_blank(s: &str) -> &str {
    let mut s = s.trim_start();
    while let Some(rest) = s.strip_prefix("/*") {
        match rest.find("*/") {
            Some(end) => s = rest[end + 2..].trim_start(),
            None => return s,
        }
    }
    s
}

/// Whether `ddl` is `CREATE TABLE <name> (`.
fn creates_table(ddl: &str, name: &str) -> bool {
    let rest = skip_blank(ddl);
    let Some(rest) = strip_keyword(rest, "CREATE").and_then(|r| strip_keyword(r, "TABLE")) else {
        return false;
    };
    match skip_blank(rest).strip_prefix(&quote(name)) {
        Some(after) => skip_blank(after).starts_with('('),
        None => false,
    }
}

fn strip_keyword<'a>(s: &'a str, kw: &str) -> Option<&'a str> {
    let s = skip_blank(s);
    if s.len() >= kw.len() && s[..kw.len()].eq_ignore_ascii_case(kw) {
        let rest = &s[kw.len()..];
        if rest.starts_with(|c: char| c.is_whitespace() || c == '/') {
            return Some(rest);
        }
    }
    None
}

/// Whether `ddl` is `CREATE [options] VIEW <name> ... AS` / `CREATE [options] TRIGGER <name> ...`
/// with the name unqualified or qualified with database `db`.
fn creates(ddl: &str, what: &str, name: &str, db: &str) -> bool {
    let Some(rest) = strip_keyword(ddl, "CREATE") else {
        return false;
    };
    // Options before the keyword (ALGORITHM=..., SQL SECURITY ..., OR REPLACE are all words).
    let upper = rest.to_ascii_uppercase();
    let needle = format!(" {what} ");
    let Some(at) = upper.find(&needle) else {
        return false;
    };
    let head = &upper[..at];
    if head.contains('`') || head.contains('(') || head.contains(';') {
        return false;
    }
    let after = skip_blank(&rest[at + needle.len()..]);
    let qualified = format!("{}.", quote(db));
    let after = after.strip_prefix(&qualified).unwrap_or(after);
    let rest = after
        .strip_prefix(&quote(name))
        .or_else(|| after.strip_prefix(name).filter(|_| is_bare(name)));
    match rest {
        Some(after) => after.starts_with(|c: char| c.is_whitespace() || c == '('),
        None => false,
    }
}

/// Whether `name` may be written without backticks.
fn is_bare(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
}

/// A binding's import, staged in `<lane db>$imp`.
pub struct Staging {
    m: Mysql,
    conn: Option<Conn>,
    /// Idle loader connections, and the frames being loaded (each task gives its connection back).
    idle: Vec<Conn>,
    loading: tokio::task::JoinSet<(Conn, Result<()>)>,
    lane: LaneId,
    baseline: String,
    live: String,
    stage: String,
    old: String,
    source: Option<String>,
    tables: Vec<Table>,
    current: Option<usize>,
    views: Vec<Object>,
    triggers: Vec<Object>,
    rows: u64,
}

impl Staging {
    /// Checks that `target` is the lane's database and exists, and removes leftovers of an
    /// interrupted import.
    pub async fn prepare(
        lane: &LaneId,
        spec: &DataSpec,
        baseline: &str,
        target: &str,
    ) -> Result<Staging> {
        own_database(lane, baseline, target)?;
        let (stage, old) = staging_names(target)?;
        let m = Mysql::connect(&spec.address).await?;
        if !m.database_exists(target).await? {
            m.close().await;
            return Err(DataError::Invalid(format!(
                "binding `{}`: lane `{lane}` has no database `{target}` on {} (deploy into the \
                 lane first)",
                spec.name,
                redact_addr(&spec.address)
            )));
        }
        let left = drop_staging(&m, baseline, lane).await?;
        if left > 0 {
            tracing::info!(%lane, binding = %spec.name, "removed {left} staging database(s) left by an interrupted import");
        }
        let mut conn = m.conn().await?;
        conn.query_drop(SESSION).await.map_err(|e| m.error(e))?;
        let mut idle = Vec::with_capacity(LOADERS);
        for _ in 0..LOADERS {
            let mut c = m.conn().await?;
            c.query_drop(SESSION).await.map_err(|e| m.error(e))?;
            idle.push(c);
        }
        Ok(Staging {
            m,
            conn: Some(conn),
            idle,
            loading: tokio::task::JoinSet::new(),
            lane: lane.clone(),
            baseline: baseline.to_owned(),
            live: target.to_owned(),
            stage,
            old,
            source: None,
            tables: Vec::new(),
            current: None,
            views: Vec::new(),
            triggers: Vec::new(),
            rows: 0,
        })
    }

    /// The section starts: creates the staging database with the file's character set.
    pub async fn section(&mut self, s: &Section) -> Result<()> {
        super::expect_kind(s, "mysql")?;
        let (charset, collation) = s.charset.clone().ok_or_else(|| {
            DataError::Format(format!("section `{}` names no character set", s.binding))
        })?;
        for name in [&charset, &collation] {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(DataError::Format(format!(
                    "section `{}`: `{name}` is not a character set or collation",
                    s.binding
                )));
            }
        }
        self.source = Some(s.source.clone());
        check_staging(&self.baseline, &self.lane, &self.stage)?;
        let sql = format!(
            "CREATE DATABASE {} CHARACTER SET {charset} COLLATE {collation}",
            quote(&self.stage)
        );
        let use_stage = format!("USE {}", quote(&self.stage));
        let m = &self.m;
        let conn = self.conn.as_mut().expect("open");
        conn.query_drop(sql).await.map_err(|e| m.error(e))?;
        conn.query_drop(use_stage).await.map_err(|e| m.error(e))?;
        Ok(())
    }

    /// Applies one frame to the staging database; returns the rows it held.
    pub async fn frame(&mut self, f: &Frame, cancel: &Cancel) -> Result<u64> {
        if self.source.is_none() {
            return Err(DataError::Format("a MySQL frame before its section".into()));
        }
        match f.tag {
            TAG_MYSQL_TABLE => {
                let t: Table = f.json("table")?;
                if !creates_table(&t.ddl, &t.name) {
                    return Err(DataError::Format(format!(
                        "the definition of table `{}` does not create that table",
                        t.name
                    )));
                }
                if self.tables.iter().any(|x| x.name == t.name) {
                    return Err(DataError::Format(format!(
                        "table `{}` appears twice",
                        t.name
                    )));
                }
                let m = &self.m;
                let conn = self.conn.as_mut().expect("open");
                conn.exec_drop(t.ddl.as_str(), ())
                    .await
                    .map_err(|e| m.error(e))?;
                self.tables.push(t);
                self.current = Some(self.tables.len() - 1);
                Ok(0)
            }
            TAG_MYSQL_ROWS => {
                let i = self
                    .current
                    .ok_or_else(|| DataError::Format("rows before any table".into()))?;
                let width = self.tables[i].columns.len();
                let rows = format::decode_rows(&f.payload, width)?;
                let n = rows.len() as u64;
                self.insert(i, rows, cancel).await?;
                self.rows += n;
                Ok(n)
            }
            TAG_MYSQL_VIEW | TAG_MYSQL_TRIGGER => {
                let mut o: Object = f.json("view or trigger")?;
                // References to the exported database point at the lane's.
                o.ddl = requalify(
                    &o.ddl,
                    self.source.as_deref().unwrap_or_default(),
                    &self.live,
                );
                let (what, list) = if f.tag == TAG_MYSQL_VIEW {
                    ("VIEW", &mut self.views)
                } else {
                    ("TRIGGER", &mut self.triggers)
                };
                if !creates(&o.ddl, what, &o.name, &self.live) {
                    return Err(DataError::Format(format!(
                        "the definition of {} `{}` does not create that {}",
                        what.to_ascii_lowercase(),
                        o.name,
                        what.to_ascii_lowercase()
                    )));
                }
                if let Some(mode) = &o.sql_mode
                    && !mode
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b',')
                {
                    return Err(DataError::Format(format!(
                        "trigger `{}`: `{mode}` is not an sql_mode",
                        o.name
                    )));
                }
                list.push(o);
                Ok(0)
            }
            other => Err(DataError::Format(format!(
                "a frame of tag {other} in a MySQL section"
            ))),
        }
    }

    /// Loads rows into table `table` of the staging database on an idle loader connection (the
    /// frame is loaded while the next ones are read; at most `LOADERS` at once).
    async fn insert(
        &mut self,
        table: usize,
        rows: Vec<Vec<format::Value>>,
        cancel: &Cancel,
    ) -> Result<()> {
        let t = &self.tables[table];
        let width = t.columns.len();
        let list = t
            .columns
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ");
        let head = format!(
            "INSERT INTO {}.{} ({list}) VALUES ",
            quote(&self.stage),
            quote(&t.name)
        );
        if width == 0 {
            return Ok(());
        }
        if self.idle.is_empty() {
            self.wait_one().await?;
        }
        let mut conn = self.idle.pop().expect("a loader is idle");
        let address = self.m.address().to_owned();
        let cancel = cancel.clone();
        self.loading.spawn(async move {
            let r = load(&mut conn, &head, rows, &cancel).await;
            (
                conn,
                r.map_err(|e| match e {
                    LoadError::Mysql(e) => crate::mysql::error_at(&address, e),
                    LoadError::Cancelled => DataError::Cancelled,
                }),
            )
        });
        Ok(())
    }

    /// Waits for one loading frame; its error, if it failed.
    async fn wait_one(&mut self) -> Result<()> {
        match self.loading.join_next().await {
            None => Ok(()),
            Some(Ok((conn, r))) => {
                self.idle.push(conn);
                r
            }
            Some(Err(e)) => Err(self.m.server_msg(format!("a loader task failed: {e}"))),
        }
    }

    /// Waits for every loading frame; the first error.
    async fn drain(&mut self) -> Result<()> {
        let mut first = Ok(());
        while !self.loading.is_empty() {
            let r = self.wait_one().await;
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// The section ends: waits for the rows being loaded and checks the counts.
    pub async fn end(&mut self, e: &SectionEnd) -> Result<(u64, u64)> {
        self.drain().await?;
        let objects = (self.tables.len() + self.views.len() + self.triggers.len()) as u64;
        if e.items != self.rows || e.objects != objects {
            return Err(DataError::Format(format!(
                "section `{}` closes with {} rows and {} objects, but holds {} and {objects}",
                e.binding, e.items, e.objects, self.rows
            )));
        }
        Ok((self.rows, objects))
    }

    /// Swaps the staged tables in (one statement batch), then creates the views and triggers.
    pub async fn swap(&mut self) -> Result<()> {
        let m = &self.m;
        let err = |e| m.error(e);
        crate::teardown::check_mysql_drop(&self.baseline, &self.lane, &self.live)?;
        check_staging(&self.baseline, &self.lane, &self.old)?;
        let conn = self.conn.as_mut().expect("open");
        let live_tables: Vec<String> = conn
            .exec(
                "SELECT TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
                (&self.live,),
            )
            .await
            .map_err(err)?;
        let live_views: Vec<String> = conn
            .exec(
                "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ?",
                (&self.live,),
            )
            .await
            .map_err(err)?;
        let live_triggers: Vec<String> = conn
            .exec(
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?",
                (&self.live,),
            )
            .await
            .map_err(err)?;
        let (live, old, stage) = (quote(&self.live), quote(&self.old), quote(&self.stage));
        conn.query_drop(format!("CREATE DATABASE {old}"))
            .await
            .map_err(err)?;
        let mut batch = Vec::new();
        for t in &live_triggers {
            batch.push(format!("DROP TRIGGER {live}.{}", quote(t)));
        }
        if !live_views.is_empty() {
            batch.push(format!(
                "DROP VIEW {}",
                live_views
                    .iter()
                    .map(|v| format!("{live}.{}", quote(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let moves: Vec<String> = live_tables
            .iter()
            .map(|t| format!("{live}.{q} TO {old}.{q}", q = quote(t)))
            .chain(
                self.tables
                    .iter()
                    .map(|t| format!("{stage}.{q} TO {live}.{q}", q = quote(&t.name))),
            )
            .collect();
        if !moves.is_empty() {
            batch.push(format!("RENAME TABLE {}", moves.join(", ")));
        }
        if !batch.is_empty() {
            // One packet: the server runs the drops and the rename together, even when this
            // process dies meanwhile.
            conn.query_drop(batch.join(";\n")).await.map_err(err)?;
        }
        conn.query_drop(format!("USE {live}")).await.map_err(err)?;
        let mut pending: Vec<String> = self.views.iter().map(|v| v.ddl.clone()).collect();
        while !pending.is_empty() {
            let before = pending.len();
            let mut failed = Vec::new();
            let mut last = None;
            for ddl in pending {
                if let Err(e) = conn.exec_drop(ddl.as_str(), ()).await {
                    last = Some(m.error(e));
                    failed.push(ddl);
                }
            }
            if failed.len() == before {
                return Err(last.expect("a failure"));
            }
            pending = failed;
        }
        for t in &self.triggers {
            if let Some(mode) = &t.sql_mode {
                conn.query_drop(format!("SET SESSION sql_mode = '{mode}'"))
                    .await
                    .map_err(err)?;
            }
            conn.exec_drop(t.ddl.as_str(), ()).await.map_err(err)?;
        }
        Ok(())
    }

    /// Drops the staging databases (after a swap, or instead of it).
    pub async fn abort(mut self) {
        self.loading.abort_all();
        while self.loading.join_next().await.is_some() {}
        for c in self.idle.drain(..) {
            let _ = c.disconnect().await;
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.disconnect().await;
        }
        if let Err(e) = drop_staging(&self.m, &self.baseline, &self.lane).await {
            tracing::warn!(lane = %self.lane, error = %e, "could not drop the staging databases; the next import or the lane's teardown does");
        }
        self.m.close().await;
    }
}

enum LoadError {
    Mysql(mysql_async::Error),
    Cancelled,
}

/// Appends value `v` as an SQL literal: `NULL`, a quoted string (UTF-8, escaped as MySQL reads it
/// without `NO_BACKSLASH_ESCAPES`, which the loader sessions' sql_mode leaves out), or a hex
/// literal for bytes that are not UTF-8 (binary data). Values never leave their literal.
fn push_literal(out: &mut String, v: &format::Value) {
    match v {
        None => out.push_str("NULL"),
        Some(b) => match std::str::from_utf8(b) {
            Ok(text) => {
                out.push('\'');
                for c in text.chars() {
                    match c {
                        '\0' => out.push_str("\\0"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        '\x1a' => out.push_str("\\Z"),
                        '\\' | '\'' | '"' => {
                            out.push('\\');
                            out.push(c);
                        }
                        c => out.push(c),
                    }
                }
                out.push('\'');
            }
            Err(_) => {
                out.push_str("0x");
                for byte in b {
                    out.push_str(&format!("{byte:02X}"));
                }
            }
        },
    }
}

/// Inserts `rows` (one frame) in one transaction, statements of about `STATEMENT_BYTES` each (the
/// text protocol, as `mysql` loads a dump: no statement to prepare per row count).
async fn load(
    conn: &mut Conn,
    head: &str,
    rows: Vec<Vec<format::Value>>,
    cancel: &Cancel,
) -> std::result::Result<(), LoadError> {
    conn.query_drop("START TRANSACTION")
        .await
        .map_err(LoadError::Mysql)?;
    let mut sql = String::with_capacity(STATEMENT_BYTES + (64 << 10));
    let mut first = true;
    for row in &rows {
        if first {
            sql.push_str(head);
            first = false;
        } else {
            sql.push(',');
        }
        sql.push('(');
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            push_literal(&mut sql, v);
        }
        sql.push(')');
        if sql.len() >= STATEMENT_BYTES {
            if cancel.is_cancelled() {
                let _ = conn.query_drop("ROLLBACK").await;
                return Err(LoadError::Cancelled);
            }
            conn.query_drop(std::mem::take(&mut sql))
                .await
                .map_err(LoadError::Mysql)?;
            first = true;
        }
    }
    if !first {
        conn.query_drop(sql).await.map_err(LoadError::Mysql)?;
    }
    conn.query_drop("COMMIT").await.map_err(LoadError::Mysql)?;
    Ok(())
}

fn redact_addr(a: &str) -> String {
    lane_core::data::redact(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_keep_values_inside() {
        let lit = |v: Option<&[u8]>| {
            let mut s = String::new();
            push_literal(&mut s, &v.map(<[u8]>::to_vec));
            s
        };
        assert_eq!(lit(None), "NULL");
        assert_eq!(lit(Some(b"12")), "'12'");
        assert_eq!(lit(Some(b"")), "''");
        assert_eq!(
            lit(Some(b"a'b\\c\"d\n\r\0\x1a'); DROP DATABASE x; --")),
            "'a\\'b\\\\c\\\"d\\n\\r\\0\\Z\\'); DROP DATABASE x; --'"
        );
        assert_eq!(lit(Some(&[0, 0xff, 0x10])), "0x00FF10");
    }

    #[test]
    fn only_the_named_object_is_created() {
        assert!(creates_table("CREATE TABLE `t` (\n `id` int)", "t"));
        assert!(!creates_table("CREATE TABLE `u` (`id` int)", "t"));
        assert!(!creates_table("CREATE TABLE `t`.`x` (`id` int)", "t"));
        assert!(!creates_table("DROP TABLE `t`", "t"));
        assert!(creates(
            "CREATE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `v` AS select 1",
            "VIEW",
            "v",
            "d"
        ));
        assert!(creates("CREATE VIEW `d`.`v` AS select 1", "VIEW", "v", "d"));
        assert!(!creates(
            "CREATE VIEW `other`.`v` AS select 1",
            "VIEW",
            "v",
            "d"
        ));
        assert!(creates(
            "CREATE TRIGGER `tr` BEFORE INSERT ON `t` FOR EACH ROW SET NEW.a = 1",
            "TRIGGER",
            "tr",
            "d"
        ));
        assert!(creates(
            "CREATE TRIGGER `d`.tr AFTER INSERT ON t FOR EACH ROW SET @a = 1",
            "TRIGGER",
            "tr",
            "d"
        ));
        assert!(!creates("CREATE TRIGGER trx AFTER", "TRIGGER", "tr", "d"));
        assert!(!creates("CREATE TABLE `tr` (a int)", "TRIGGER", "tr", "d"));
    }

    #[test]
    fn staging_names_pass_only_their_guard() {
        let lane: LaneId = "feat-a".parse().unwrap();
        assert!(check_staging("orders", &lane, "orders__lane_feat_a$imp").is_ok());
        assert!(check_staging("orders", &lane, "orders__lane_feat_a$old").is_ok());
        for bad in [
            "orders",
            "orders__lane_feat_a",
            "orders__lane_feat_b$imp",
            "x$imp",
        ] {
            assert!(check_staging("orders", &lane, bad).is_err(), "{bad}");
        }
    }
}
