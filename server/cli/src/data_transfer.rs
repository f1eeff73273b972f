//! `lane data export | import | backup | backups | restore`: a lane's data to and from a lane
//! data file (`lane_data::transfer`), with a progress bar on a terminal and `--json`.
//!
//! The lane's copies are the bindings its document records; their servers come from the
//! `lane.toml` around the current directory (as for `lane data ls`). Backups live under the state
//! dir: `$LANE_HOME/backups/<lane>/<UTC time>.lanedata`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use lane_api::{Backend, BackendError, find_lane};
use lane_core::data::DataSpec;
use lane_core::lane::DataBinding;
use lane_core::{LaneId, ServiceId};
use lane_data::DataError;
use lane_data::transfer::{self, Cancel, OnProgress, Progress, Report, Target, store};
use serde::Serialize;

/// A `lane-data` error as the CLI's error (the `lane.data.*` LSP commands answer the same).
pub(crate) fn data_error(e: DataError) -> anyhow::Error {
    let message = e.to_string();
    let err = match e {
        DataError::Unreachable { .. } => BackendError::unavailable(message)
            .with_help("start the server, or fix the binding's `url` in lane.toml"),
        DataError::Auth { .. } => BackendError::invalid(message)
            .with_help("fix the user or password in the binding's `url`"),
        DataError::Format(_) => BackendError::invalid(message)
            .with_help("import a file written by `lane data export` or `lane data backup`"),
        DataError::MissingBaseline { .. }
        | DataError::MissingTopic { .. }
        | DataError::Invalid(_)
        | DataError::Io(_) => BackendError::invalid(message),
        DataError::PoolFull { .. } => BackendError::conflict(message).with_help(
            "an import stages into a free database of the pool: free one, or widen `pool`",
        ),
        DataError::Guard(_) => BackendError::conflict(message),
        DataError::Cancelled => {
            let mut c = BackendError::cancelled();
            c.message = message;
            c
        }
        DataError::Server { .. } => BackendError::internal(message),
    };
    err.into()
}

/// Who replaces a lane's data (an import or a restore), and whether they may replace another
/// developer's.
pub(crate) struct Replace {
    pub actor: String,
    pub force: bool,
}

/// The bindings the `lane.toml` in `here` declares (none when it has none or cannot be read).
pub(crate) fn specs_in(here: &Path) -> Vec<DataSpec> {
    declared_in(here).into_iter().map(|(_, s)| s).collect()
}

/// The bindings of every `lane.toml` in `here`, each with the service that declares it (none
/// when it has none or cannot be read).
pub(crate) fn declared_in(here: &Path) -> Vec<(ServiceId, DataSpec)> {
    lane_workspace::load_manifest(here)
        .map(|m| m.data.into_iter().map(|s| (m.service.clone(), s)).collect())
        .unwrap_or_default()
}

/// The bindings lane `lane` holds: those its document records (`records`), and each key-prefix
/// Redis binding of `specs` without one. A deploy records a key-prefix binding's copy, the lane's
/// prefix `lane:<id>:`, but a lane deployed before that was done has no record of it; its copy is
/// the same prefix.
pub(crate) fn held<'a>(
    lane: &LaneId,
    records: &[DataBinding],
    specs: impl IntoIterator<Item = &'a DataSpec>,
) -> Vec<DataBinding> {
    let mut out = records.to_vec();
    for s in specs.into_iter().filter(|s| transfer::prefix_mode(s)) {
        if !out.iter().any(|d| d.name == s.name) {
            out.push(lane_core::data::record(
                s,
                lane_core::data::redis_prefix(lane),
            ));
        }
    }
    out
}

/// The lane's copies of its bindings (only `only`, when given), with their servers from `specs`
/// (the lane.toml here). Without `only`, bindings of kinds not exported yet are left out (each
/// named through `note`).
pub(crate) async fn targets(
    backend: &dyn Backend,
    specs: &[DataSpec],
    lane: &LaneId,
    only: Option<&str>,
    all_kinds: bool,
    replace: Option<Replace>,
    note: &(dyn Fn(String) + Send + Sync),
) -> anyhow::Result<Vec<Target>> {
    let status = backend.status().await?;
    let view = find_lane(&status, lane)
        .ok_or_else(|| BackendError::not_found(format!("lane `{lane}` does not exist")))?;
    // Replacing a lane's data changes the lane: its owner's, unless forced (as for a deploy).
    if let Some(r) = replace {
        lane_core::lane::check_owner(&view.lane, &r.actor, r.force).map_err(BackendError::from)?;
    }
    let records = &held(lane, &view.lane.data, specs);
    if records.is_empty() {
        return Err(BackendError::invalid(format!("lane `{lane}` owns no data"))
            .with_help("deploy a service with `[data.<name>]` bindings into the lane first")
            .into());
    }
    if let Some(name) = only
        && !records.iter().any(|d| d.name == name)
    {
        return Err(BackendError::invalid(format!(
            "lane `{lane}` holds no binding `{name}` (it holds {})",
            records
                .iter()
                .map(|d| format!("`{}`", d.name))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into());
    }
    let mut out = Vec::new();
    for d in records.iter().filter(|d| only.is_none_or(|o| o == d.name)) {
        let spec = specs
            .iter()
            .find(|s| s.name == d.name && s.kind() == d.kind)
            .ok_or_else(|| {
                BackendError::invalid(format!(
                    "binding `{}` ({}): the lane.toml here does not declare it, so its server is \
                     unknown",
                    d.name, d.kind
                ))
                .with_help("run this in the directory of the service that declares the binding")
            })?;
        if only.is_none() && !all_kinds && !transfer::supported(spec) {
            note(format!(
                "binding `{}` ({}) is left out: its kind is not exported yet",
                d.name, d.kind
            ));
            continue;
        }
        out.push(Target {
            spec: spec.clone(),
            target: d.target.clone(),
        });
    }
    if out.is_empty() {
        return Err(BackendError::invalid(format!(
            "lane `{lane}` holds no binding lane can export yet"
        ))
        .into());
    }
    Ok(out)
}

/// Draws progress on stderr when it is a terminal (and `--json` is not given).
struct Bar {
    on: bool,
}

impl Bar {
    fn new(json: bool) -> Self {
        Bar {
            on: !json && std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, p: &Progress) {
        if !self.on {
            return;
        }
        let pct = (p.done.min(p.total) * 100)
            .checked_div(p.total)
            .unwrap_or(0) as usize;
        let filled = pct / 5;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{} [{:<6}] {}{} {pct:>3}% {}/{} {}",
            p.binding,
            p.step,
            "█".repeat(filled),
            "░".repeat(20 - filled),
            p.done,
            p.total,
            p.unit
        );
    }

    fn done(&self) {
        if self.on {
            eprint!("\r\x1b[2K");
        }
    }
}

/// A cancel that Ctrl-C triggers while `op` runs.
async fn cancellable<T>(op: impl AsyncFnOnce(Cancel) -> T) -> T {
    let cancel = Cancel::new();
    let c = cancel.clone();
    let watch = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            c.cancel();
            eprintln!("\ncancelling: what was staged is removed, the lane's data stays as it was");
        }
    });
    let r = op(cancel).await;
    watch.abort();
    r
}

#[derive(Serialize)]
struct Output<'a> {
    #[serde(flatten)]
    report: &'a Report,
    file: PathBuf,
}

fn print(report: &Report, file: &Path, json: bool, verb: &str) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&Output {
                report,
                file: file.to_owned(),
            })?
        );
        return Ok(());
    }
    for b in &report.bindings {
        let (what, objects) = match b.kind.as_str() {
            "mysql" => ("rows", "tables/views/triggers"),
            "kafka" => ("records", "topics"),
            _ => ("keys", "objects"),
        };
        println!(
            "{verb} {}: {} {what}{} ({} `{}`)",
            b.binding,
            b.items,
            if b.objects > 0 {
                format!(", {} {objects}", b.objects)
            } else {
                String::new()
            },
            b.kind,
            b.target
        );
    }
    println!(
        "{} bytes, {:.1}s: {}",
        report.bytes,
        report.seconds,
        file.display()
    );
    Ok(())
}

/// Removes a partial export file when dropped, unless disarmed: an export whose request is
/// dropped mid-way (the IDE's `$/cancelRequest`) leaves no `.partial` behind.
struct PartialFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Exports to `path` through `path.partial`, renamed when complete.
pub(crate) async fn export_to(
    lane: &LaneId,
    targets: &[Target],
    path: &Path,
    on: OnProgress<'_>,
    cancel: &Cancel,
) -> anyhow::Result<Report> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| BackendError::invalid(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut partial = PartialFile {
        path: store::partial(path),
        armed: false,
    };
    let file = tokio::fs::File::create(&partial.path).await.map_err(|e| {
        BackendError::invalid(format!("cannot write {}: {e}", partial.path.display()))
    })?;
    partial.armed = true;
    let (w, report) = transfer::export(
        lane,
        targets,
        tokio::io::BufWriter::with_capacity(1 << 20, file),
        on,
        cancel,
    )
    .await
    .map_err(data_error)?;
    let file = w.into_inner();
    file.sync_all().await.ok();
    drop(file);
    std::fs::rename(&partial.path, path)
        .map_err(|e| BackendError::invalid(format!("cannot rename to {}: {e}", path.display())))?;
    partial.armed = false;
    Ok(report)
}

/// Imports `path` into the lane's copies (atomically, per binding).
pub(crate) async fn import_from(
    lane: &LaneId,
    targets: &[Target],
    path: &Path,
    only: Option<&str>,
    on: OnProgress<'_>,
    cancel: &Cancel,
) -> anyhow::Result<Report> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| BackendError::invalid(format!("cannot read {}: {e}", path.display())))?;
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    transfer::import(
        lane,
        targets,
        tokio::io::BufReader::with_capacity(1 << 20, file),
        only,
        size,
        on,
        cancel,
    )
    .await
    .map_err(data_error)
}

/// A new backup file of `lane` under the state dir, named for the time now.
pub(crate) fn new_backup_path(lane: &LaneId) -> anyhow::Result<PathBuf> {
    let home = lane_local::default_state_dir()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(store::new_path(&home, lane, now))
}

/// The backups of `lane` (of every lane without one), oldest first.
pub(crate) fn list_backups(lane: Option<&LaneId>) -> anyhow::Result<Vec<store::Backup>> {
    let home = lane_local::default_state_dir()?;
    store::list(&home, lane).map_err(data_error)
}

/// The backup `name` of `lane`, or its newest without a name.
pub(crate) fn find_backup(lane: &LaneId, name: Option<&str>) -> anyhow::Result<store::Backup> {
    let home = lane_local::default_state_dir()?;
    store::find(&home, lane, name).map_err(data_error)
}

/// Exports with the terminal's bar and Ctrl-C.
async fn export_cli(
    lane: &LaneId,
    targets: &[Target],
    path: &Path,
    json: bool,
) -> anyhow::Result<Report> {
    let bar = Bar::new(json);
    let r =
        cancellable(async |cancel| export_to(lane, targets, path, &|p| bar.show(p), &cancel).await)
            .await;
    bar.done();
    r
}

/// Imports with the terminal's bar and Ctrl-C.
async fn import_cli(
    lane: &LaneId,
    targets: &[Target],
    path: &Path,
    only: Option<&str>,
    json: bool,
) -> anyhow::Result<Report> {
    let bar = Bar::new(json);
    let r = cancellable(async |cancel| {
        import_from(lane, targets, path, only, &|p| bar.show(p), &cancel).await
    })
    .await;
    bar.done();
    r
}

fn stderr_note(note: String) {
    eprintln!("note: {note}");
}

pub async fn export(
    backend: &dyn Backend,
    lane: &LaneId,
    binding: Option<&str>,
    out: &Path,
    json: bool,
) -> anyhow::Result<u8> {
    let specs = specs_in(&std::env::current_dir()?);
    let targets = targets(backend, &specs, lane, binding, false, None, &stderr_note).await?;
    let report = export_cli(lane, &targets, out, json).await?;
    print(&report, out, json, "exported")?;
    Ok(0)
}

pub async fn import(
    backend: &dyn Backend,
    lane: &LaneId,
    binding: Option<&str>,
    file: &Path,
    force: bool,
    json: bool,
) -> anyhow::Result<u8> {
    let here = std::env::current_dir()?;
    let replace = Replace {
        actor: crate::requests::owner_in(here.clone()).await,
        force,
    };
    let specs = specs_in(&here);
    let targets = targets(
        backend,
        &specs,
        lane,
        binding,
        true,
        Some(replace),
        &stderr_note,
    )
    .await?;
    let report = import_cli(lane, &targets, file, binding, json).await?;
    print(&report, file, json, "imported")?;
    Ok(0)
}

pub async fn backup(backend: &dyn Backend, lane: &LaneId, json: bool) -> anyhow::Result<u8> {
    let specs = specs_in(&std::env::current_dir()?);
    let targets = targets(backend, &specs, lane, None, false, None, &stderr_note).await?;
    let path = new_backup_path(lane)?;
    let report = export_cli(lane, &targets, &path, json).await?;
    print(&report, &path, json, "backed up")?;
    Ok(0)
}

pub async fn backups(lane: Option<&LaneId>, json: bool) -> anyhow::Result<u8> {
    let all = list_backups(lane)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(0);
    }
    if all.is_empty() {
        println!("no backups");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|b| {
            vec![
                b.lane.clone(),
                b.name.clone(),
                b.bytes.to_string(),
                b.path.display().to_string(),
            ]
        })
        .collect();
    crate::output::table(&["LANE", "BACKUP", "BYTES", "FILE"], &rows);
    Ok(0)
}

pub async fn restore(
    backend: &dyn Backend,
    lane: &LaneId,
    name: Option<&str>,
    force: bool,
    json: bool,
) -> anyhow::Result<u8> {
    let backup = find_backup(lane, name)?;
    let here = std::env::current_dir()?;
    let replace = Replace {
        actor: crate::requests::owner_in(here.clone()).await,
        force,
    };
    let specs = specs_in(&here);
    let targets = targets(
        backend,
        &specs,
        lane,
        None,
        true,
        Some(replace),
        &stderr_note,
    )
    .await?;
    let report = import_cli(lane, &targets, &backup.path, None, json).await?;
    print(&report, &backup.path, json, "restored")?;
    Ok(0)
}

/// Runs a `lane data` command other than `ls`.
pub async fn run(backend: &dyn Backend, command: crate::cli::DataCommand) -> anyhow::Result<u8> {
    use crate::cli::DataCommand as C;
    use crate::requests::parse_lane;
    match command {
        C::Ls(f) => crate::data::ls(backend, &std::env::current_dir()?, f.json).await,
        C::Export {
            lane,
            binding,
            output,
            json,
        } => {
            export(
                backend,
                &parse_lane(&lane)?,
                binding.as_deref(),
                &output,
                json.json,
            )
            .await
        }
        C::Import {
            lane,
            args,
            force,
            json,
        } => {
            let (binding, file) = match args.as_slice() {
                [file] => (None, file),
                [binding, file] => (Some(binding.as_str()), file),
                _ => {
                    return Err(BackendError::invalid(
                        "usage: lane data import <LANE> [BINDING] <FILE>",
                    )
                    .into());
                }
            };
            import(
                backend,
                &parse_lane(&lane)?,
                binding,
                Path::new(file),
                force,
                json.json,
            )
            .await
        }
        C::Backup { lane, json } => backup(backend, &parse_lane(&lane)?, json.json).await,
        C::Backups { lane, json } => {
            let lane = lane.as_deref().map(parse_lane).transpose()?;
            backups(lane.as_ref(), json.json).await
        }
        C::Restore {
            lane,
            backup,
            force,
            json,
        } => {
            restore(
                backend,
                &parse_lane(&lane)?,
                backup.as_deref(),
                force,
                json.json,
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lane_core::lane::DataKind;

    fn specs() -> Vec<DataSpec> {
        let toml = "app = \"demo\"\nproc = \"b\"\n[run]\ncommand = \"true\"\n\
            [data.sessions]\nkind = \"redis\"\nurl = \"redis://h/0\"\nenv = \"S_URL\"\n\
            prefix_env = \"S_PREFIX\"\n\
            [data.cache]\nkind = \"redis\"\nurl = \"redis://h/1\"\nenv = \"C_URL\"\npool = [2, 3]\n";
        lane_core::manifest::Manifest::parse(Path::new("lane.toml"), toml)
            .expect("the manifest parses")
            .data
    }

    #[test]
    fn a_lane_holds_its_records_and_the_prefix_of_each_key_prefix_binding() {
        let lane: LaneId = "feat-a".parse().unwrap();
        let cache = DataBinding {
            kind: DataKind::Redis,
            name: "cache".into(),
            target: "2".into(),
        };
        let held_now = held(&lane, std::slice::from_ref(&cache), &specs());
        let sessions = DataBinding {
            kind: DataKind::Redis,
            name: "sessions".into(),
            target: "lane:feat-a:".into(),
        };
        assert_eq!(held_now, [cache.clone(), sessions.clone()]);
        // Recorded already (today's deploys): not twice. No binding declared: the records.
        let recorded = [sessions.clone(), cache.clone()];
        assert_eq!(held(&lane, &recorded, &specs()), recorded);
        assert_eq!(held(&lane, &[], &[]), []);
        // A database-mode binding without a record is not held (it has no index yet).
        assert_eq!(held(&lane, &[], &specs()), [sessions]);
    }
}
