//! Copying baseline's keys that match patterns into a lane's Redis database, within a quota.
//!
//! A Redis binding with `copy = { patterns = [...], keys = N, bytes = B }` gets, when a lane first
//! claims its database, baseline's keys matching any of the patterns (`SCAN ... MATCH`, Redis's
//! glob syntax), each with its value and remaining time to live (`DUMP` and `PTTL` read from
//! baseline, `RESTORE` written to the lane).
//!
//! The quota is exact and never passed: the matching key names are collected first and taken in
//! byte order; keys are copied one after another until the next key would make the count more
//! than `keys` or the bytes more than `bytes`, and there the copy stops (a smaller key after a
//! large one that did not fit is not copied either, so which keys a lane gets depends only on
//! baseline's keys and the quota). A key's size is its name's length plus the length of its
//! `DUMP` serialization (what is read from baseline and written to the lane). Keys that expire
//! or are deleted between the scan and their `DUMP` are skipped, and count nothing.
//!
//! Baseline is only read (`SELECT`, `SCAN`, `PTTL`, `DUMP`); every write goes to the lane's
//! database, on its own connection, after checking that it is not baseline's index and that the
//! lane's claim is in it. The lane's claim key is never copied.

use std::collections::BTreeSet;

use lane_core::LaneId;
use lane_core::data::RedisCopy;
use serde::Serialize;

use crate::error::{DataError, Result};
use crate::redis::{OWNER_KEY, Redis, Reply};

const SCAN_COUNT: &[u8] = b"1000";
const BATCH: usize = 256;

/// Why a copy stopped before copying every matching key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum Stop {
    /// `keys` keys were copied; more matched.
    Keys,
    /// This key (its name, lossily as text) would have taken the bytes past the quota.
    Bytes { key: String },
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// Keys in baseline matching a pattern when they were scanned.
    pub matched: u64,
    /// Keys written into the lane's database.
    pub keys: u64,
    /// Their bytes (names plus `DUMP` serializations); never more than the quota.
    pub bytes: u64,
    /// Matching keys gone (expired, deleted) before they could be read.
    pub vanished: u64,
    /// Set when the quota ended the copy.
    pub stopped: Option<Stop>,
}

fn bulk(r: &Reply) -> Option<&[u8]> {
    match r {
        Reply::Bulk(Some(b)) => Some(b),
        _ => None,
    }
}

/// The names of the keys of `r`'s selected database matching any of `patterns`.
async fn matching(r: &mut Redis, patterns: &[String]) -> Result<BTreeSet<Vec<u8>>> {
    let mut names = BTreeSet::new();
    for pattern in patterns {
        let mut cursor = b"0".to_vec();
        loop {
            let reply = r
                .cmd(&[
                    b"SCAN",
                    &cursor,
                    b"MATCH",
                    pattern.as_bytes(),
                    b"COUNT",
                    SCAN_COUNT,
                ])
                .await?;
            let Reply::Array(Some(parts)) = reply else {
                return Err(r.server("SCAN answered no array".into()));
            };
            let (Some(Reply::Bulk(Some(next))), Some(Reply::Array(Some(keys)))) =
                (parts.first(), parts.get(1))
            else {
                return Err(r.server("SCAN answered an unexpected shape".into()));
            };
            names.extend(
                keys.iter()
                    .filter_map(|k| bulk(k).map(<[u8]>::to_vec))
                    .filter(|k| k.as_slice() != OWNER_KEY.as_bytes()),
            );
            if next.as_slice() == b"0" {
                break;
            }
            cursor = next.clone();
        }
    }
    Ok(names)
}

/// Copies baseline's keys matching `copy.patterns` from database `baseline` of the server at
/// `url` into database `target`, which lane `lane` must hold, within `copy`'s quota.
pub async fn copy_keys(
    url: &str,
    baseline: u32,
    lane: &LaneId,
    target: u32,
    copy: &RedisCopy,
) -> Result<CopyReport> {
    if copy.keys == 0 || copy.bytes == 0 {
        return Err(DataError::Invalid(format!(
            "a Redis copy needs a key count and a byte quota above zero (keys {}, bytes {}); \
             leave `copy` out to copy nothing",
            copy.keys, copy.bytes
        )));
    }
    if copy.patterns.is_empty() || copy.patterns.iter().any(String::is_empty) {
        return Err(DataError::Invalid(
            "a Redis copy needs key patterns, none of them empty".into(),
        ));
    }
    if target == baseline {
        return Err(DataError::Guard(format!(
            "Redis database {target} is baseline's; nothing is copied into it"
        )));
    }
    let mut dst = Redis::connect(url).await?;
    dst.select(target).await?;
    match dst.owner().await? {
        Some(o) if o == lane.as_str() => {}
        other => {
            return Err(DataError::Guard(format!(
                "Redis database {target} on {} is claimed by {}, not lane `{lane}`; nothing is \
                 copied into it",
                dst.address(),
                other.map_or("nobody".to_owned(), |o| format!("`{o}`"))
            )));
        }
    }
    let mut src = Redis::connect(url).await?;
    src.select(baseline).await?;
    let names: Vec<Vec<u8>> = matching(&mut src, &copy.patterns)
        .await?
        .into_iter()
        .collect();
    let mut report = CopyReport {
        matched: names.len() as u64,
        keys: 0,
        bytes: 0,
        vanished: 0,
        stopped: None,
    };
    'batches: for chunk in names.chunks(BATCH) {
        let mut reads: Vec<Vec<&[u8]>> = Vec::with_capacity(chunk.len() * 2);
        for k in chunk {
            reads.push(vec![b"PTTL", k]);
            reads.push(vec![b"DUMP", k]);
        }
        let replies = src.pipeline(&reads).await?;
        let mut writes: Vec<(Vec<u8>, String, Vec<u8>)> = Vec::new();
        let mut stop = None;
        for (k, pair) in chunk.iter().zip(replies.chunks(2)) {
            if let Reply::Error(e) = &pair[1] {
                return Err(src.server(format!("DUMP: {e}")));
            }
            let pttl = match &pair[0] {
                Reply::Int(n) => *n,
                _ => -2,
            };
            let Some(payload) = bulk(&pair[1]) else {
                report.vanished += 1;
                continue;
            };
            if pttl == -2 {
                report.vanished += 1;
                continue;
            }
            if report.keys == copy.keys {
                stop = Some(Stop::Keys);
                break;
            }
            let size = (k.len() + payload.len()) as u64;
            if report.bytes + size > copy.bytes {
                stop = Some(Stop::Bytes {
                    key: String::from_utf8_lossy(k).into_owned(),
                });
                break;
            }
            report.keys += 1;
            report.bytes += size;
            // PTTL -1: no expiry (RESTORE's 0); otherwise the milliseconds left.
            writes.push((k.clone(), pttl.max(0).to_string(), payload.to_vec()));
        }
        if !writes.is_empty() {
            let cmds: Vec<Vec<&[u8]>> = writes
                .iter()
                .map(|(k, ttl, payload)| {
                    vec![
                        b"RESTORE".as_slice(),
                        k.as_slice(),
                        ttl.as_bytes(),
                        payload.as_slice(),
                        b"REPLACE".as_slice(),
                    ]
                })
                .collect();
            for reply in dst.pipeline(&cmds).await? {
                if let Reply::Error(e) = reply {
                    return Err(dst.server(format!("RESTORE: {e}")));
                }
            }
        }
        if stop.is_some() {
            report.stopped = stop;
            break 'batches;
        }
    }
    Ok(report)
}
