//! `lane.data.export | import | backup | backups | restore`: the `lane data` commands of the
//! same names (`crate::data_transfer`), with work-done progress and
//! `window/workDoneProgress/cancel` in place of the terminal's bar and Ctrl-C.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lane_api::BackendError;
use lane_core::LaneId;
use lane_core::data::DataSpec;
use lane_data::transfer::{Cancel, Progress, Report, Target};
use tokio::sync::mpsc;
use tower_lsp_server::ls_types::{MessageType, ProgressToken};

use super::ext;
use super::handlers::{ProgressGuard, backend_error, begin_progress, start_progress};
use super::server::Lsp;
use super::{uri, workspace};
use crate::data_transfer::{self as dt, Replace};
use crate::requests::parse_lane;

type Result<T, E = BackendError> = std::result::Result<T, E>;

/// The end message of a data operation whose request was dropped.
const DROPPED: &str = "cancelled; what was staged is removed, the lane's data stays as it was";

/// A path or `file://` URI argument named `what`.
fn path_argument(what: &str, p: &str) -> Result<PathBuf> {
    uri::folder_argument(p).ok_or_else(|| {
        BackendError::invalid(format!(
            "{what}: `{p}` is not an absolute local path or file:// URI"
        ))
    })
}

/// The bindings the named folder's `lane.toml` declares, else those of every service folder of
/// the workspace (the first declaration of a name and kind wins).
async fn specs(lsp: &Lsp, folder: Option<&str>) -> Result<Vec<DataSpec>> {
    let folders = match folder {
        Some(f) => vec![path_argument("folder", f)?],
        None => workspace::read(lsp.folders()).await.services,
    };
    let mut specs: Vec<DataSpec> = Vec::new();
    for f in &folders {
        for s in dt::specs_in(f) {
            if !specs
                .iter()
                .any(|o| o.name == s.name && o.kind() == s.kind())
            {
                specs.push(s);
            }
        }
    }
    Ok(specs)
}

/// The lane's targets, with the bindings left out collected in `notes`.
async fn targets(
    lsp: &Lsp,
    folder: Option<&str>,
    lane: &LaneId,
    only: Option<&str>,
    all_kinds: bool,
    force: Option<bool>,
    notes: &Mutex<Vec<String>>,
) -> Result<Vec<Target>> {
    let specs = specs(lsp, folder).await?;
    let replace = match force {
        Some(force) => Some(Replace {
            actor: lsp.owner().await,
            force,
        }),
        None => None,
    };
    let backend = lsp.backend().await;
    let note = |n: String| {
        if let Ok(mut v) = notes.lock() {
            v.push(n);
        }
    };
    dt::targets(
        backend.as_ref(),
        &specs,
        lane,
        only,
        all_kinds,
        replace,
        &note,
    )
    .await
    .map_err(backend_error)
}

/// The percentage and message of a progress report.
fn describe(p: &Progress) -> (u8, String) {
    let pct = (p.done.min(p.total) * 100)
        .checked_div(p.total)
        .unwrap_or(0) as u8;
    let message = if p.total > 0 {
        format!(
            "{} {}: {}/{} {}",
            p.binding, p.step, p.done, p.total, p.unit
        )
    } else {
        format!("{} {}: {} {}", p.binding, p.step, p.done, p.unit)
    };
    (pct, message)
}

/// A transfer to run under progress.
enum Op<'a> {
    Export {
        targets: &'a [Target],
        path: &'a Path,
    },
    Import {
        targets: &'a [Target],
        path: &'a Path,
        only: Option<&'a str>,
    },
}

/// Runs `op` under work-done progress titled `title`: its progress is reported (a report when
/// the binding, step or percentage changes), `window/workDoneProgress/cancel` cancels it, and the
/// progress ends with the outcome. Answers with the report on `op`'s file and `notes`.
async fn with_progress(
    lsp: &Lsp,
    token: Option<ProgressToken>,
    kind: &str,
    title: String,
    lane: &LaneId,
    op: Op<'_>,
    notes: Mutex<Vec<String>>,
) -> Result<ext::DataTransferResult> {
    let (Op::Export { path, .. } | Op::Import { path, .. }) = op;
    let (token, notify, guard) = start_progress(lsp, token, kind, DROPPED).await;
    lsp.client
        .log_message(MessageType::INFO, format!("[data] {title}"))
        .await;
    begin_progress(lsp, &token, title.clone()).await;
    let (tx, mut rx) = mpsc::unbounded_channel::<(u8, String)>();
    let forward = {
        let client = lsp.client.clone();
        let token = token.clone();
        tokio::spawn(async move {
            while let Some((pct, message)) = rx.recv().await {
                ProgressGuard::report(&client, &token, pct, message).await;
            }
        })
    };
    // Only changes are sent: the callback runs once per batch.
    let last: Mutex<Option<(String, &'static str, u8)>> = Mutex::new(None);
    let on = |p: &Progress| {
        let (pct, message) = describe(p);
        let key = (p.binding.clone(), p.step, pct);
        if let Ok(mut l) = last.lock()
            && l.as_ref() != Some(&key)
        {
            *l = Some(key);
            let _ = tx.send((pct, message));
        }
    };
    let cancel = Cancel::new();
    let watch = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            notify.notified().await;
            cancel.cancel();
        })
    };
    let outcome = match op {
        Op::Export { targets, path } => dt::export_to(lane, targets, path, &on, &cancel).await,
        Op::Import {
            targets,
            path,
            only,
        } => dt::import_from(lane, targets, path, only, &on, &cancel).await,
    };
    watch.abort();
    drop(tx);
    let _ = forward.await;
    lsp.refresh();
    match outcome {
        Ok(report) => {
            let message = format!(
                "{}: {} bytes in {:.1}s",
                title.to_lowercase(),
                report.bytes,
                report.seconds
            );
            lsp.client
                .log_message(MessageType::INFO, format!("[data] {message}"))
                .await;
            guard.finish(message).await;
            Ok(result(report, path, notes))
        }
        Err(e) => {
            let e = backend_error(e);
            let message = match e.code {
                lane_api::ErrorCode::Cancelled => e.message.clone(),
                _ => format!("failed: {}", e.message),
            };
            lsp.client
                .log_message(MessageType::INFO, format!("[data] {title}: {message}"))
                .await;
            guard.finish(message).await;
            Err(e)
        }
    }
}

fn result(report: Report, file: &Path, notes: Mutex<Vec<String>>) -> ext::DataTransferResult {
    ext::DataTransferResult {
        lane: report.lane,
        file: file.display().to_string(),
        bindings: report
            .bindings
            .into_iter()
            .map(|b| ext::DataBindingReport {
                binding: b.binding,
                kind: b.kind,
                target: b.target,
                items: b.items,
                objects: b.objects,
            })
            .collect(),
        bytes: report.bytes,
        seconds: report.seconds,
        notes: notes.into_inner().unwrap_or_default(),
    }
}

pub async fn export(
    lsp: &Lsp,
    a: ext::DataExportArgs,
    token: Option<ProgressToken>,
) -> Result<ext::DataTransferResult> {
    let lane = parse_lane(&a.lane).map_err(backend_error)?;
    let path = path_argument("path", &a.path)?;
    let notes = Mutex::new(Vec::new());
    let only = a.binding.as_deref();
    let targets = targets(lsp, a.folder.as_deref(), &lane, only, false, None, &notes).await?;
    let title = format!("Exporting lane {lane}'s data to {}", path.display());
    with_progress(
        lsp,
        token,
        "export",
        title,
        &lane,
        Op::Export {
            targets: &targets,
            path: &path,
        },
        notes,
    )
    .await
}

pub async fn import(
    lsp: &Lsp,
    a: ext::DataImportArgs,
    token: Option<ProgressToken>,
) -> Result<ext::DataTransferResult> {
    let lane = parse_lane(&a.lane).map_err(backend_error)?;
    let path = path_argument("path", &a.path)?;
    let notes = Mutex::new(Vec::new());
    let only = a.binding.as_deref();
    let force = Some(a.force);
    let targets = targets(lsp, a.folder.as_deref(), &lane, only, true, force, &notes).await?;
    let title = format!("Importing {} into lane {lane}", path.display());
    with_progress(
        lsp,
        token,
        "import",
        title,
        &lane,
        Op::Import {
            targets: &targets,
            path: &path,
            only,
        },
        notes,
    )
    .await
}

pub async fn backup(
    lsp: &Lsp,
    a: ext::DataBackupArgs,
    token: Option<ProgressToken>,
) -> Result<ext::DataTransferResult> {
    let lane = parse_lane(&a.lane).map_err(backend_error)?;
    let notes = Mutex::new(Vec::new());
    let targets = targets(lsp, a.folder.as_deref(), &lane, None, false, None, &notes).await?;
    let path = dt::new_backup_path(&lane).map_err(backend_error)?;
    let title = format!("Backing up lane {lane}'s data");
    with_progress(
        lsp,
        token,
        "backup",
        title,
        &lane,
        Op::Export {
            targets: &targets,
            path: &path,
        },
        notes,
    )
    .await
}

pub async fn backups(a: ext::DataBackupsArgs) -> Result<Vec<ext::DataBackupInfo>> {
    let lane = a
        .lane
        .as_deref()
        .map(parse_lane)
        .transpose()
        .map_err(backend_error)?;
    let all = dt::list_backups(lane.as_ref()).map_err(backend_error)?;
    Ok(all
        .into_iter()
        .map(|b| ext::DataBackupInfo {
            lane: b.lane,
            name: b.name,
            path: b.path.display().to_string(),
            bytes: b.bytes,
        })
        .collect())
}

pub async fn restore(
    lsp: &Lsp,
    a: ext::DataRestoreArgs,
    token: Option<ProgressToken>,
) -> Result<ext::DataTransferResult> {
    let lane = parse_lane(&a.lane).map_err(backend_error)?;
    let backup = dt::find_backup(&lane, a.backup.as_deref()).map_err(backend_error)?;
    let notes = Mutex::new(Vec::new());
    let force = Some(a.force);
    let targets = targets(lsp, a.folder.as_deref(), &lane, None, true, force, &notes).await?;
    let title = format!("Restoring lane {lane}'s data from backup {}", backup.name);
    let path = backup.path;
    with_progress(
        lsp,
        token,
        "restore",
        title,
        &lane,
        Op::Import {
            targets: &targets,
            path: &path,
            only: None,
        },
        notes,
    )
    .await
}
