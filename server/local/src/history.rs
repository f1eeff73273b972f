//! Per-lane history: every change to a lane, appended as one JSON line to
//! `<state dir>/history/<lane>.jsonl` by the agent, after the change was saved. A deleted lane's
//! history stays for `LANE_HISTORY_KEEP` (default 7 days) after its last entry, then
//! [`prune`] removes it. A lane created again under the same id continues the same file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use lane_api::{BackendError, HistoryEntry, Result};
use lane_core::LaneId;

fn file(dir: &Path, lane: &LaneId) -> PathBuf {
    dir.join(format!("{lane}.jsonl"))
}

/// Appends `entry` to its lane's history (one line, one write: concurrent appends do not mix).
pub fn append(dir: &Path, entry: &HistoryEntry) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file(dir, &entry.lane))?;
    f.write_all(&line)
}

/// The history of `lane`, oldest first; `None` when there is none (never existed, or pruned).
/// A line that does not parse (a write cut short by a crash) is skipped.
pub fn read(dir: &Path, lane: &LaneId) -> Result<Option<Vec<HistoryEntry>>> {
    let path = file(dir, lane);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(BackendError::internal(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    Ok(Some(
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
    ))
}

/// Removes the histories of lanes that no longer exist (`live` says which do) whose last entry
/// is older than `keep`. Returns the lanes whose history went.
pub fn prune(dir: &Path, keep: Duration, live: impl Fn(&str) -> bool) -> Vec<String> {
    let mut gone = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return gone;
    };
    let now = SystemTime::now();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(lane) = name.strip_suffix(".jsonl") else {
            continue;
        };
        if live(lane) {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > keep);
        if old && std::fs::remove_file(e.path()).is_ok() {
            gone.push(lane.to_owned());
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;
    use lane_api::LaneEvent;

    #[test]
    fn appends_reads_and_prunes_only_deleted_lanes() {
        let dir = std::env::temp_dir().join(format!("lane-history-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let lane: LaneId = "feature-x".parse().unwrap();
        assert_eq!(read(&dir, &lane).unwrap(), None);
        for event in [LaneEvent::Create, LaneEvent::Delete] {
            let entry = HistoryEntry {
                at: 1,
                lane: lane.clone(),
                event,
                owner: "alice@example.com".into(),
                actor: Some("alice@example.com".into()),
                service: None,
                reason: "because".into(),
            };
            append(&dir, &entry).unwrap();
        }
        let got = read(&dir, &lane).unwrap().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].event, LaneEvent::Delete);
        // A live lane's history stays however old; a deleted one's goes once older than `keep`.
        assert!(prune(&dir, Duration::ZERO, |l| l == "feature-x").is_empty());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(prune(&dir, Duration::from_secs(3600), |_| false).len(), 0);
        assert_eq!(prune(&dir, Duration::ZERO, |_| false), ["feature-x"]);
        assert_eq!(read(&dir, &lane).unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
