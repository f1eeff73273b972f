//! Human output: aligned tables and the deploy progress bar.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use lane_api::{Progress, Stage, Status};
use lane_core::duration::format_duration;

/// Prints rows as an aligned table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// `lane ls`: one row per lane service (or per empty lane).
pub fn lanes(status: &Status) {
    if status.lanes.is_empty() {
        println!("no lanes. `lane create <id>` or `lane deploy --lane <id>` makes one.");
        return;
    }
    let mut rows = Vec::new();
    for lv in &status.lanes {
        let l = &lv.lane;
        let active = if status.active_lane.lane() == Some(&l.id) {
            "*"
        } else {
            ""
        };
        let expires = expires_cell(lv, status.now);
        let parent = l.parent.as_ref().map_or("-".to_owned(), |p| p.to_string());
        if lv.instances.is_empty() {
            rows.push(vec![
                format!("{active}{}", l.id),
                parent.clone(),
                l.owner.clone(),
                expires.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for i in &lv.instances {
            let rpm = status
                .traffic
                .iter()
                .find(|t| t.service == i.service && t.lane.lane() == Some(&l.id))
                .map_or(0, |t| t.per_minute);
            rows.push(vec![
                format!("{active}{}", l.id),
                parent.clone(),
                l.owner.clone(),
                expires.clone(),
                i.service.to_string(),
                i.version.as_ref().map_or("-".into(), |v| v.version.clone()),
                i.state.as_str().to_owned(),
                rpm.to_string(),
            ]);
        }
    }
    table(
        &[
            "LANE",
            "PARENT",
            "OWNER",
            "EXPIRES IN",
            "SERVICE",
            "VERSION",
            "HEALTH",
            "REQ/MIN",
        ],
        &rows,
    );
    merged_notes(status);
}

/// A lane's EXPIRES IN cell: its TTL, or when it goes for being merged, whichever is sooner.
fn expires_cell(lv: &lane_api::LaneView, now: u64) -> String {
    let ttl = lv.lane.remaining(now);
    match &lv.merged {
        None => format_duration(ttl),
        Some(m) => match m.reclaim_at {
            Some(at) => format!(
                "{} (merged)",
                format_duration(ttl.min(Duration::from_secs(at.saturating_sub(now))))
            ),
            None => format!("{} (merged, kept)", format_duration(ttl)),
        },
    }
}

/// One line under the lanes table per merged lane: why, and when it goes.
fn merged_notes(status: &Status) {
    for lv in &status.lanes {
        let Some(m) = &lv.merged else { continue };
        let id = &lv.lane.id;
        let when = match m.reclaim_at {
            Some(at) => format!(
                "reclaimed in {} unless `lane extend {id}`",
                remaining(at.saturating_sub(status.now))
            ),
            None => "kept by `lane extend`: it lives until its TTL".to_owned(),
        };
        println!("merged: lane {id}: {}; {when}", m.reason);
    }
}

pub fn baseline(status: &Status) {
    if status.baseline.is_empty() {
        match status.backend.as_str() {
            "local" => println!("baseline: nothing running (`lane baseline up` starts it)"),
            "consul" => println!(
                "baseline: no <prefix>.<app>.<proc> instance is registered in Consul (the team's \
                 deployments register them)"
            ),
            _ => println!("baseline: nothing running"),
        }
        return;
    }
    let rows: Vec<Vec<String>> = status
        .baseline
        .iter()
        .map(|i| {
            vec![
                i.service.to_string(),
                i.placement.endpoint(),
                i.version.as_ref().map_or("-".into(), |v| v.version.clone()),
                i.state.as_str().to_owned(),
                i.restarts.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "BASELINE SERVICE",
            "ADDRESS",
            "VERSION",
            "HEALTH",
            "RESTARTS",
        ],
        &rows,
    );
}

/// The baseline services that follow production: what production is at, what baseline runs,
/// the drift and why. Prints nothing when nothing follows production.
pub fn baseline_follow(rows: &[lane_api::BaselineSync]) {
    if rows.is_empty() {
        return;
    }
    // Commits are shortened as git does; other versions (images) are shown whole.
    let short = |c: &Option<String>| {
        c.as_deref().map_or("-".to_owned(), |c| {
            if c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()) {
                c[..12].to_owned()
            } else {
                c.to_owned()
            }
        })
    };
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|b| {
            vec![
                b.service.to_string(),
                b.follows.clone(),
                short(&b.production),
                short(&b.running),
                b.drift.as_str().to_owned(),
            ]
        })
        .collect();
    table(
        &[
            "FOLLOWING SERVICE",
            "FOLLOWS",
            "PRODUCTION",
            "RUNNING",
            "DRIFT",
        ],
        &table_rows,
    );
    for b in rows {
        if let Some(reason) = &b.reason {
            println!(
                "  {} {}: {}",
                b.service,
                b.drift.as_str(),
                reason.replace('\n', "\n    ")
            );
        }
    }
}

/// Renders deploy progress on stderr: a redrawn bar on a terminal, one line per stage otherwise.
pub struct ProgressView {
    tty: bool,
    last_stage: Option<Stage>,
}

impl ProgressView {
    pub fn new() -> Self {
        ProgressView {
            tty: std::io::stderr().is_terminal(),
            last_stage: None,
        }
    }

    pub fn show(&mut self, p: &Progress) {
        let mut err = std::io::stderr().lock();
        match p {
            Progress::Stage {
                service,
                stage,
                percent,
                message,
            } => {
                let filled = usize::from(*percent) / 5;
                let bar = format!("{}{}", "█".repeat(filled), "░".repeat(20 - filled));
                let text = format!(
                    "{service} [{:<8}] {bar} {percent:>3}% {message}",
                    stage.as_str()
                );
                if self.tty {
                    let _ = write!(err, "\r\x1b[2K{text}");
                    if *stage == Stage::Route {
                        let _ = writeln!(err);
                    }
                } else if self.last_stage != Some(*stage) || !message.is_empty() {
                    let _ = writeln!(err, "{text}");
                }
                self.last_stage = Some(*stage);
            }
            Progress::Log { service, line } => {
                if self.tty {
                    let _ = write!(err, "\r\x1b[2K");
                }
                let _ = writeln!(err, "  {service} | {line}");
            }
        }
    }
}

pub fn remaining(secs: u64) -> String {
    format_duration(Duration::from_secs(secs))
}

/// A lane's history as a table: when (UTC), what, whose lane, who did it, which service, why.
pub fn history(entries: &[lane_api::HistoryEntry]) {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                utc(e.at),
                serde_json::to_value(e.event)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                e.owner.clone(),
                e.actor.clone().unwrap_or_else(|| "-".into()),
                e.service.as_ref().map_or("-".into(), ToString::to_string),
                e.reason.clone(),
            ]
        })
        .collect();
    table(
        &["WHEN (UTC)", "EVENT", "OWNER", "BY", "SERVICE", "WHY"],
        &rows,
    );
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// After `lane extend`: says so when the lane is merged and now kept (not reclaimed for being
/// merged). Quiet when the status cannot be read (the extend itself succeeded).
pub async fn kept_merged(backend: &dyn lane_api::Backend, id: &lane_core::LaneId) {
    let Ok(st) = backend.status().await else {
        return;
    };
    if let Some(m) = st
        .lanes
        .iter()
        .find(|l| &l.lane.id == id)
        .and_then(|l| l.merged.as_ref())
        && m.reclaim_at.is_none()
    {
        println!(
            "lane {id} is merged ({}); kept: it is not reclaimed for being merged and lives until \
             its TTL",
            m.reason
        );
    }
}

#[cfg(test)]
mod history_tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(super::utc(1_798_761_599), "2026-12-31 23:59:59");
    }
}
