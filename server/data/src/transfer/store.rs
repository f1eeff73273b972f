//! Backups: lane data files kept under `<state dir>/backups/<lane>/<UTC time>.lanedata`, written
//! to a `.partial` name and renamed when complete, so a listed backup is always a whole file.

use std::path::{Path, PathBuf};

use lane_core::LaneId;
use serde::Serialize;

use crate::error::{DataError, Result};

pub const EXTENSION: &str = "lanedata";

/// One backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backup {
    pub lane: String,
    /// The file name without the extension (`20261130T124500Z`).
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
}

/// The directory of lane `lane`'s backups.
pub fn dir(home: &Path, lane: &LaneId) -> PathBuf {
    home.join("backups").join(lane.as_str())
}

/// `YYYYMMDDTHHMMSSZ` for unix seconds `secs`.
pub fn stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days since 1970-01-01 to a civil date (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A new backup's path for lane `lane` (a suffix keeps two backups in one second apart).
pub fn new_path(home: &Path, lane: &LaneId, secs: u64) -> PathBuf {
    let d = dir(home, lane);
    let base = stamp(secs);
    let mut path = d.join(format!("{base}.{EXTENSION}"));
    let mut n = 1;
    while path.exists() {
        path = d.join(format!("{base}-{n}.{EXTENSION}"));
        n += 1;
    }
    path
}

/// The backups of lane `lane` (every lane's when `None`), oldest first per lane.
pub fn list(home: &Path, lane: Option<&LaneId>) -> Result<Vec<Backup>> {
    let root = home.join("backups");
    let lanes: Vec<String> = match lane {
        Some(l) => vec![l.to_string()],
        None => match std::fs::read_dir(&root) {
            Ok(rd) => {
                let mut v: Vec<String> = rd
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .collect();
                v.sort();
                v
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
            Err(e) => {
                return Err(DataError::Io(format!(
                    "cannot read {}: {e}",
                    root.display()
                )));
            }
        },
    };
    let mut out = Vec::new();
    for l in lanes {
        let d = root.join(&l);
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(DataError::Io(format!("cannot read {}: {e}", d.display()))),
        };
        let mut found: Vec<Backup> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let path = e.path();
                if path.extension().and_then(|x| x.to_str()) != Some(EXTENSION) {
                    return None;
                }
                let name = path.file_stem()?.to_str()?.to_owned();
                let bytes = e.metadata().ok()?.len();
                Some(Backup {
                    lane: l.clone(),
                    name,
                    path,
                    bytes,
                })
            })
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(found);
    }
    Ok(out)
}

/// The backup `name` of lane `lane` (a name as listed, or a path), or its latest when `None`.
pub fn find(home: &Path, lane: &LaneId, name: Option<&str>) -> Result<Backup> {
    let all = list(home, Some(lane))?;
    match name {
        None => all.into_iter().last().ok_or_else(|| {
            DataError::Invalid(format!(
                "lane `{lane}` has no backups (in {}); make one with `lane data backup {lane}`",
                dir(home, lane).display()
            ))
        }),
        Some(n) => {
            let stem = n.strip_suffix(&format!(".{EXTENSION}")).unwrap_or(n);
            all.iter().find(|b| b.name == stem).cloned().ok_or_else(|| {
                DataError::Invalid(format!(
                    "lane `{lane}` has no backup `{n}`; its backups: {}",
                    if all.is_empty() {
                        "none".to_owned()
                    } else {
                        all.iter()
                            .map(|b| b.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ))
            })
        }
    }
}

/// The temporary name a file is written under until it is complete.
pub fn partial(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        assert_eq!(stamp(0), "19700101T000000Z");
        assert_eq!(stamp(1_798_761_599), "20261231T235959Z");
    }
}
