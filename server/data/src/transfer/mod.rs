//! Export, import, backup and restore of a lane's data, through one file format
//! ([`format`]: versioned, framed, checksummed).
//!
//! Each kind plugs in with four steps: *export* its frames into a section of the file, *prepare*
//! a staging place on its server (removing leftovers of an interrupted run first), *stage* the
//! section's frames there, and *swap* the staged data in, in one step the server does atomically
//! (MySQL: one `RENAME TABLE` of every table; Redis: `SWAPDB` inside `MULTI`, or one Lua script in
//! key-prefix mode; Apollo: the publish). Nothing of the lane's
//! live data changes before the whole file has been read and its end frame checked; a failure,
//! a cancel or a killed process before the swap leaves the lane's data as it was, and the staging
//! place is removed then or by the next import, restore or teardown (all through the guard: only
//! the lane's own names). Kafka cannot swap a topic in one step: [`kafka`] stages into staging
//! topics, seals them, and replaces the lane topics' records partition by partition; a swap cut
//! short is completed by the next import or restore.
//!
//! The operations take a progress callback and a [`Cancel`], for the CLI's progress bar and
//! for a daemon.

pub mod apollo;
pub mod format;
pub mod kafka;
pub mod mysql;
pub mod redis;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use lane_core::LaneId;
use lane_core::data::{DataOptions, DataSpec, RedisMode};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{DataError, Result};
use format::{BindingEntry, Manifest, Reader, Section, SectionEnd, Writer};

/// Where an operation is, for a progress bar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub binding: String,
    /// `export`, `stage`, `swap`.
    pub step: &'static str,
    pub done: u64,
    /// An estimate (MySQL's table statistics, Redis' DBSIZE, the file's size); 0 when unknown.
    pub total: u64,
    /// `rows`, `keys`, `bytes`.
    pub unit: &'static str,
}

/// A progress callback.
pub type OnProgress<'a> = &'a (dyn Fn(&Progress) + Send + Sync);

/// Asks a running operation to stop; checked between batches.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    pub(crate) fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(DataError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// A binding of the lane and the lane's own copy of it (`target`: the database, the index, as
/// the lane records it).
#[derive(Debug, Clone)]
pub struct Target {
    pub spec: DataSpec,
    pub target: String,
}

/// What an export or import did, per binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindingReport {
    pub binding: String,
    pub kind: String,
    /// The lane's copy.
    pub target: String,
    /// Rows (MySQL), keys (Redis), items (Apollo) or records (Kafka).
    pub items: u64,
    /// Tables, views and triggers (MySQL); namespaces (Apollo); topics (Kafka).
    pub objects: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub lane: String,
    pub bindings: Vec<BindingReport>,
    /// Bytes of the file written or read.
    pub bytes: u64,
    pub seconds: f64,
}

fn kind_name(spec: &DataSpec) -> String {
    spec.kind().to_string()
}

/// Whether bindings like `spec` can be exported and imported: every kind can. A new kind has to
/// say (the match has no catch-all); until it can, lane-wide exports leave it out with a note.
pub fn supported(spec: &DataSpec) -> bool {
    match spec.options {
        DataOptions::Mysql { .. }
        | DataOptions::Redis { .. }
        | DataOptions::Kafka { .. }
        | DataOptions::Apollo(_) => true,
    }
}

/// Whether `spec` is a Redis binding in key-prefix mode (its lane's copy, the prefix
/// `lane:<id>:`, is not recorded in the lane: nothing is made for it).
pub fn prefix_mode(spec: &DataSpec) -> bool {
    matches!(
        spec.options,
        DataOptions::Redis {
            mode: RedisMode::Prefix { .. },
            ..
        }
    )
}

/// Checks that a section the file opens for a binding is of the binding's kind.
pub(crate) fn expect_kind(s: &Section, kind: &str) -> Result<()> {
    if s.kind == kind {
        Ok(())
    } else {
        Err(DataError::Format(format!(
            "section `{}` is {}, expected {kind}",
            s.binding, s.kind
        )))
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes the data of `targets` (lane `lane`'s copies) to `out`.
pub async fn export<W: AsyncWrite + Unpin>(
    lane: &LaneId,
    targets: &[Target],
    out: W,
    progress: OnProgress<'_>,
    cancel: &Cancel,
) -> Result<(W, Report)> {
    let started = Instant::now();
    let manifest = Manifest {
        format: format::VERSION,
        lane: lane.to_string(),
        created: now(),
        writer: format!("lane {}", env!("CARGO_PKG_VERSION")),
        bindings: targets
            .iter()
            .map(|t| BindingEntry {
                name: t.spec.name.clone(),
                kind: kind_name(&t.spec),
            })
            .collect(),
    };
    let mut w = Writer::new(out, &manifest).await?;
    let mut bindings = Vec::new();
    for t in targets {
        cancel.check()?;
        let end = match &t.spec.options {
            DataOptions::Mysql { database, .. } => {
                mysql::export(&mut w, lane, &t.spec, database, &t.target, progress, cancel).await?
            }
            DataOptions::Redis {
                mode: RedisMode::Prefix { .. },
                ..
            } => redis::export_prefix(&mut w, lane, &t.spec, &t.target, progress, cancel).await?,
            DataOptions::Redis { .. } => {
                redis::export(&mut w, lane, &t.spec, &t.target, progress, cancel).await?
            }
            DataOptions::Apollo(_) => {
                apollo::export(&mut w, lane, &t.spec, &t.target, progress, cancel).await?
            }
            DataOptions::Kafka { .. } => {
                kafka::export(&mut w, lane, &t.spec, &t.target, progress, cancel).await?
            }
        };
        bindings.push(BindingReport {
            binding: t.spec.name.clone(),
            kind: kind_name(&t.spec),
            target: t.target.clone(),
            items: end.items,
            objects: end.objects,
        });
    }
    let (out, bytes) = w.finish().await?;
    Ok((
        out,
        Report {
            lane: lane.to_string(),
            bindings,
            bytes,
            seconds: started.elapsed().as_secs_f64(),
        },
    ))
}

/// A binding's data staged on its server, waiting for the swap.
enum Staged {
    Mysql(Box<mysql::Staging>),
    Redis(redis::Staging),
    RedisPrefix(redis::PrefixStaging),
    Apollo(Box<apollo::Staging>),
    Kafka(Box<kafka::Staging>),
}

impl Staged {
    async fn section(&mut self, s: &Section) -> Result<()> {
        match self {
            Staged::Mysql(m) => m.section(s).await,
            Staged::Redis(r) => r.section(s),
            Staged::RedisPrefix(r) => r.section(s),
            Staged::Apollo(a) => a.section(s),
            Staged::Kafka(k) => k.section(s),
        }
    }
    async fn frame(&mut self, f: &format::Frame, cancel: &Cancel) -> Result<u64> {
        match self {
            Staged::Mysql(m) => m.frame(f, cancel).await,
            Staged::Redis(r) => r.frame(f).await,
            Staged::RedisPrefix(r) => r.frame(f).await,
            Staged::Apollo(a) => a.frame(f),
            Staged::Kafka(k) => k.frame(f, cancel).await,
        }
    }
    async fn end(&mut self, e: &SectionEnd, cancel: &Cancel) -> Result<(u64, u64)> {
        match self {
            Staged::Mysql(m) => m.end(e).await,
            Staged::Redis(r) => r.end(e),
            Staged::RedisPrefix(r) => r.end(e),
            Staged::Apollo(a) => a.end(e, cancel).await,
            Staged::Kafka(k) => k.end(e),
        }
    }
    async fn swap(&mut self) -> Result<()> {
        match self {
            Staged::Mysql(m) => m.swap().await,
            Staged::Redis(r) => r.swap().await,
            Staged::RedisPrefix(r) => r.swap().await,
            Staged::Apollo(a) => a.swap().await,
            Staged::Kafka(k) => k.swap().await,
        }
    }
    async fn abort(self) {
        match self {
            Staged::Mysql(m) => m.abort().await,
            Staged::Redis(r) => r.abort().await,
            Staged::RedisPrefix(r) => r.abort().await,
            Staged::Apollo(a) => a.abort().await,
            Staged::Kafka(k) => k.abort().await,
        }
    }
}

/// Replaces lane `lane`'s data of the bindings in the file read from `input` (only `only`'s,
/// when given) with the file's, atomically per binding: everything is staged first, checked
/// against the file's end frame, then swapped in. `size`: the file's size, for progress.
pub async fn import<R: AsyncRead + Unpin>(
    lane: &LaneId,
    targets: &[Target],
    input: R,
    only: Option<&str>,
    size: u64,
    progress: OnProgress<'_>,
    cancel: &Cancel,
) -> Result<Report> {
    let started = Instant::now();
    let (mut reader, manifest) = Reader::new(input).await?;
    let listed = |m: &Manifest| {
        m.bindings
            .iter()
            .map(|b| format!("`{}` ({})", b.name, b.kind))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let wanted: Vec<&BindingEntry> = match only {
        Some(name) => {
            let b = manifest
                .bindings
                .iter()
                .find(|b| b.name == name)
                .ok_or_else(|| {
                    DataError::Invalid(format!(
                        "the file holds no binding `{name}` (it holds {})",
                        listed(&manifest)
                    ))
                })?;
            vec![b]
        }
        None => manifest.bindings.iter().collect(),
    };
    if wanted.is_empty() {
        return Err(DataError::Invalid("the file holds no bindings".into()));
    }
    let mut pairs = Vec::new();
    for b in &wanted {
        let t = targets
            .iter()
            .find(|t| t.spec.name == b.name)
            .ok_or_else(|| {
                DataError::Invalid(format!(
                    "the file holds binding `{}` ({}), which lane `{lane}` does not hold{}",
                    b.name,
                    b.kind,
                    if only.is_none() {
                        "; name the bindings to import one by one"
                    } else {
                        " (deploy the service that declares it into the lane first)"
                    }
                ))
            })?;
        if kind_name(&t.spec) != b.kind {
            return Err(DataError::Invalid(format!(
                "binding `{}` is {} in the file and {} in the lane",
                b.name,
                b.kind,
                kind_name(&t.spec)
            )));
        }
        pairs.push(t);
    }
    let mut staged: Vec<(String, Staged)> = Vec::new();
    let result = stage_all(
        lane,
        &pairs,
        &mut reader,
        size,
        &mut staged,
        progress,
        cancel,
    )
    .await;
    let reports = match result {
        Ok(r) => r,
        Err(e) => {
            for (_, s) in staged {
                s.abort().await;
            }
            return Err(e);
        }
    };
    // The file is whole and every binding staged: swap each in.
    let mut first_error = None;
    for (name, s) in &mut staged {
        if first_error.is_some() {
            break;
        }
        progress(&Progress {
            binding: name.clone(),
            step: "swap",
            done: 0,
            total: 1,
            unit: "bindings",
        });
        if let Err(e) = s.swap().await {
            first_error = Some(e);
        }
    }
    for (_, s) in staged {
        s.abort().await;
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(Report {
        lane: lane.to_string(),
        bindings: reports,
        bytes: reader.offset(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn stage_all<R: AsyncRead + Unpin>(
    lane: &LaneId,
    targets: &[&Target],
    reader: &mut Reader<R>,
    size: u64,
    staged: &mut Vec<(String, Staged)>,
    progress: OnProgress<'_>,
    cancel: &Cancel,
) -> Result<Vec<BindingReport>> {
    for t in targets {
        cancel.check()?;
        let s = match &t.spec.options {
            DataOptions::Mysql { database, .. } => Staged::Mysql(Box::new(
                mysql::Staging::prepare(lane, &t.spec, database, &t.target).await?,
            )),
            DataOptions::Redis {
                mode: RedisMode::Prefix { .. },
                ..
            } => {
                Staged::RedisPrefix(redis::PrefixStaging::prepare(lane, &t.spec, &t.target).await?)
            }
            DataOptions::Redis { .. } => {
                Staged::Redis(redis::Staging::prepare(lane, &t.spec, &t.target).await?)
            }
            DataOptions::Apollo(_) => Staged::Apollo(Box::new(
                apollo::Staging::prepare(lane, &t.spec, &t.target).await?,
            )),
            DataOptions::Kafka { .. } => Staged::Kafka(Box::new(
                kafka::Staging::prepare(lane, &t.spec, &t.target).await?,
            )),
        };
        staged.push((t.spec.name.clone(), s));
    }
    let mut reports = Vec::new();
    let mut current: Option<usize> = None;
    let mut seen: Vec<String> = Vec::new();
    let mut next = reader.next().await?;
    while let Some(frame) = next.take() {
        cancel.check()?;
        match frame.tag {
            format::TAG_SECTION => {
                let s: Section = frame.json("section")?;
                if current.is_some() {
                    return Err(DataError::Format(format!(
                        "section `{}` starts inside another",
                        s.binding
                    )));
                }
                if seen.contains(&s.binding) {
                    return Err(DataError::Format(format!(
                        "binding `{}` appears twice in the file",
                        s.binding
                    )));
                }
                seen.push(s.binding.clone());
                current = match staged.iter().position(|(n, _)| *n == s.binding) {
                    Some(i) => {
                        staged[i].1.section(&s).await?;
                        Some(i)
                    }
                    None => Some(usize::MAX), // not imported: its frames are skipped
                };
            }
            format::TAG_SECTION_END => {
                let e: SectionEnd = frame.json("section end")?;
                match current.take() {
                    None => {
                        return Err(DataError::Format("a section end outside a section".into()));
                    }
                    Some(usize::MAX) => {}
                    Some(i) => {
                        let (name, s) = &mut staged[i];
                        if e.binding != *name {
                            return Err(DataError::Format(format!(
                                "section `{name}` is closed as `{}`",
                                e.binding
                            )));
                        }
                        let (items, objects) = s.end(&e, cancel).await?;
                        let t = targets
                            .iter()
                            .find(|t| t.spec.name == *name)
                            .expect("staged from targets");
                        reports.push(BindingReport {
                            binding: name.clone(),
                            kind: kind_name(&t.spec),
                            target: t.target.clone(),
                            items,
                            objects,
                        });
                    }
                }
            }
            _ => match current {
                None => {
                    return Err(DataError::Format(format!(
                        "a frame of tag {} outside any section",
                        frame.tag
                    )));
                }
                Some(usize::MAX) => {}
                Some(i) => {
                    // The next frame is read from the file while the server takes this one.
                    let (applied, read) =
                        tokio::join!(staged[i].1.frame(&frame, cancel), reader.next());
                    applied?;
                    next = read?;
                    progress(&Progress {
                        binding: staged[i].0.clone(),
                        step: "stage",
                        done: reader.offset(),
                        total: size,
                        unit: "bytes",
                    });
                    continue;
                }
            },
        }
        next = reader.next().await?;
    }
    if current.is_some() {
        return Err(DataError::Format("the last section is not closed".into()));
    }
    for (name, _) in staged.iter() {
        if !reports.iter().any(|r| r.binding == *name) {
            return Err(DataError::Format(format!(
                "the manifest lists binding `{name}` but the file holds no section for it"
            )));
        }
    }
    Ok(reports)
}
