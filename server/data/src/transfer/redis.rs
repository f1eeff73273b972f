//! Redis in a lane data file: every key of the lane's database (the claim key excepted) as its
//! `DUMP` payload and its remaining time to live (`PTTL`), written in batches.
//!
//! An import claims a free database of the binding's pool for staging (claim `<lane>$imp`, so it
//! is never mistaken for the lane's own or another lane's), `RESTORE`s the keys there, and swaps
//! it in with one `MULTI`/`EXEC`: the claims are exchanged and `SWAPDB` exchanges the two
//! databases, so clients of the lane's index see the old keys or the new ones, never a mix. The
//! old keys (now in the staging index, claimed `<lane>$old`) are flushed. Staging databases left
//! by a killed import are flushed by the next import into the lane and by the lane's teardown.
//! Keys whose time to live ran out between the export and the import are not restored.
//!
//!
//! Key-prefix mode (one database shared with baseline; the lane's keys are `lane:<id>:k`): the
//! lane's keys are exported with the prefix stripped (`k`), so a file moves between lanes and
//! between the two modes. An import stages under `lane:<id>$imp:<token>:` (lane ids never hold
//! `$`, so no other lane's prefix and none of baseline's keys start with `lane:<id>$imp`; the
//! marker key `lane:<id>$imp` holds the token of the import staging now) and swaps with one Lua
//! script, which Redis runs atomically: it checks the marker still holds its token, deletes every
//! key of the lane's prefix and renames every staged key into it. Nothing outside
//! `lane:<id>:` and `lane:<id>$imp` is read or written. Leftovers of a killed import
//! (`lane:<id>$imp*`) are deleted by the next import into the lane and by the lane's teardown.

use lane_core::LaneId;
use lane_core::data::{DataOptions, DataSpec, RedisMode, redis_prefix};

use super::format::{self, Frame, Key, Section, SectionEnd, TAG_REDIS_KEYS, Writer};
use super::{Cancel, OnProgress, Progress};
use crate::error::{DataError, Result};
use crate::redis::{CLAIM, OWNER_KEY, Redis, Reply, glob_escape};

const SCAN_COUNT: &[u8] = b"1000";
const FRAME_BYTES: usize = 1 << 20;

/// The claims of a lane's staging databases: (import being staged, old data being swapped out).
pub fn staging_claims(lane: &LaneId) -> (String, String) {
    (format!("{lane}$imp"), format!("{lane}$old"))
}

fn pool(spec: &DataSpec) -> Result<(u32, u32, u32)> {
    match &spec.options {
        DataOptions::Redis {
            index,
            mode: RedisMode::Database { first, last },
            ..
        } => Ok((*first, *last, *index)),
        _ => Err(DataError::Invalid(format!(
            "binding `{}` is not a Redis binding with a database pool",
            spec.name
        ))),
    }
}

/// The lane's index `target`, checked to be in the pool, not baseline's, and claimed by the lane.
async fn own_index(r: &mut Redis, lane: &LaneId, spec: &DataSpec, target: &str) -> Result<u32> {
    let (first, last, base) = pool(spec)?;
    let index: u32 = target.parse().map_err(|_| {
        DataError::Invalid(format!(
            "binding `{}`: the lane records `{target}`, not a database index",
            spec.name
        ))
    })?;
    if index == base || !(first..=last).contains(&index) {
        return Err(DataError::Guard(format!(
            "Redis database {index} is not in binding `{}`'s pool, or is baseline's",
            spec.name
        )));
    }
    r.select(index).await?;
    match r.owner().await? {
        Some(o) if o == lane.as_str() => Ok(index),
        other => Err(DataError::Guard(format!(
            "Redis database {index} on {} is claimed by {}, not lane `{lane}`",
            r.address(),
            other.map_or("nobody".to_owned(), |o| format!("`{o}`"))
        ))),
    }
}

/// Flushes the staging databases of lane `lane` in `first..=last` (leftovers of an interrupted
/// import). Returns how many.
pub async fn clean_staging(r: &mut Redis, lane: &LaneId, first: u32, last: u32) -> Result<u32> {
    let (imp, old) = staging_claims(lane);
    let mut n = 0;
    for index in first..=last {
        r.select(index).await?;
        if let Some(owner) = r.owner().await?
            && (owner == imp || owner == old)
        {
            r.cmd(&[b"FLUSHDB"]).await?;
            n += 1;
        }
    }
    Ok(n)
}

fn bulk(r: &Reply) -> Option<&[u8]> {
    match r {
        Reply::Bulk(Some(b)) => Some(b),
        _ => None,
    }
}

/// Writes the lane's Redis database's section.
pub async fn export<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut Writer<W>,
    lane: &LaneId,
    spec: &DataSpec,
    target: &str,
    progress: OnProgress<'_>,
    cancel: &Cancel,
) -> Result<SectionEnd> {
    let mut r = Redis::connect(&spec.address).await?;
    let index = own_index(&mut r, lane, spec, target).await?;
    export_index(w, &mut r, &spec.name, index, progress, cancel).await
}

/// Writes database `index`'s keys (the claim key excepted) as binding `binding`.
pub async fn export_index<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut Writer<W>,
    r: &mut Redis,
    binding: &str,
    index: u32,
    progress: OnProgress<'_>,
    cancel: &Cancel,
) -> Result<SectionEnd> {
    r.select(index).await?;
    let total = r.dbsize().await?;
    export_keys(
        w,
        r,
        binding,
        &index.to_string(),
        None,
        total,
        progress,
        cancel,
    )
    .await
}

/// Writes the selected database's keys as binding `binding`'s section (`source`: the index or
/// the prefix). With `prefix`, only keys starting with it, written without it; without, every
/// key but the claim key.
#[allow(clippy::too_many_arguments)]
async fn export_keys<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut Writer<W>,
    r: &mut Redis,
    binding: &str,
    source: &str,
    prefix: Option<&str>,
    total: u64,
    progress: OnProgress<'_>,
    cancel: &Cancel,
) -> Result<SectionEnd> {
    w.json(
        format::TAG_SECTION,
        &Section {
            binding: binding.to_owned(),
            kind: "redis".into(),
            source: source.to_owned(),
            charset: None,
        },
    )
    .await?;
    let pattern = prefix.map(|p| format!("{}*", glob_escape(p)));
    let mut cursor = b"0".to_vec();
    let mut batch: Vec<Key> = Vec::new();
    let mut batch_bytes = 0;
    let mut done = 0u64;
    loop {
        cancel.check()?;
        let reply = match &pattern {
            None => r.cmd(&[b"SCAN", &cursor, b"COUNT", SCAN_COUNT]).await?,
            Some(p) => {
                r.cmd(&[
                    b"SCAN",
                    &cursor,
                    b"MATCH",
                    p.as_bytes(),
                    b"COUNT",
                    SCAN_COUNT,
                ])
                .await?
            }
        };
        let Reply::Array(Some(parts)) = reply else {
            return Err(DataError::Invalid("SCAN answered no array".into()));
        };
        let (Some(Reply::Bulk(Some(next))), Some(Reply::Array(Some(keys)))) =
            (parts.first(), parts.get(1))
        else {
            return Err(DataError::Invalid(
                "SCAN answered an unexpected shape".into(),
            ));
        };
        let keys: Vec<Vec<u8>> = keys
            .iter()
            .filter_map(|k| bulk(k).map(<[u8]>::to_vec))
            .filter(|k| match prefix {
                None => k.as_slice() != OWNER_KEY.as_bytes(),
                Some(p) => k.starts_with(p.as_bytes()),
            })
            .collect();
        if !keys.is_empty() {
            let mut cmds: Vec<Vec<&[u8]>> = Vec::with_capacity(keys.len() * 2);
            for k in &keys {
                cmds.push(vec![b"PTTL", k]);
                cmds.push(vec![b"DUMP", k]);
            }
            let replies = r.pipeline(&cmds).await?;
            for (k, pair) in keys.iter().zip(replies.chunks(2)) {
                let pttl = match &pair[0] {
                    Reply::Int(n) => *n,
                    _ => -2,
                };
                let Some(payload) = bulk(&pair[1]) else {
                    continue; // gone (expired or deleted) since SCAN
                };
                if pttl == -2 {
                    continue;
                }
                batch_bytes += k.len() + payload.len() + 16;
                batch.push(Key {
                    name: k[prefix.map_or(0, str::len)..].to_vec(),
                    pttl,
                    payload: payload.to_vec(),
                });
            }
        }
        let last = next.as_slice() == b"0";
        if !batch.is_empty() && (batch_bytes >= FRAME_BYTES || last) {
            w.frame(TAG_REDIS_KEYS, &format::encode_keys(&batch))
                .await?;
            done += batch.len() as u64;
            batch.clear();
            batch_bytes = 0;
            progress(&Progress {
                binding: binding.to_owned(),
                step: "export",
                done,
                total: total.max(done),
                unit: "keys",
            });
        }
        if last {
            break;
        }
        cursor = next.clone();
    }
    let end = SectionEnd {
        binding: binding.to_owned(),
        items: done,
        objects: 0,
    };
    w.json(format::TAG_SECTION_END, &end).await?;
    Ok(end)
}

/// A binding's import, staged in a free database of its pool.
pub struct Staging {
    r: Redis,
    lane: LaneId,
    live: u32,
    stage: u32,
    keys: u64,
    sectioned: bool,
}

impl Staging {
    /// Checks the lane's claim of `target`, flushes leftovers of an interrupted import and claims
    /// a free database of the pool for staging.
    pub async fn prepare(lane: &LaneId, spec: &DataSpec, target: &str) -> Result<Staging> {
        let (first, last, base) = pool(spec)?;
        let mut r = Redis::connect(&spec.address).await?;
        let live = own_index(&mut r, lane, spec, target).await?;
        let left = clean_staging(&mut r, lane, first, last).await?;
        if left > 0 {
            tracing::info!(%lane, binding = %spec.name, "flushed {left} staging database(s) left by an interrupted import");
        }
        let (imp, _) = staging_claims(lane);
        for index in (first..=last).filter(|i| *i != base && *i != live) {
            r.select(index).await?;
            let reply = r
                .cmd(&[
                    b"EVAL",
                    CLAIM.as_bytes(),
                    b"1",
                    OWNER_KEY.as_bytes(),
                    imp.as_bytes(),
                ])
                .await?;
            if bulk(&reply) == Some(imp.as_bytes()) {
                return Ok(Staging {
                    r,
                    lane: lane.clone(),
                    live,
                    stage: index,
                    keys: 0,
                    sectioned: false,
                });
            }
        }
        Err(DataError::PoolFull {
            address: r.address().to_owned(),
            first,
            last,
        })
    }

    pub fn section(&mut self, s: &Section) -> Result<()> {
        super::expect_kind(s, "redis")?;
        self.sectioned = true;
        Ok(())
    }

    /// Restores one frame's keys into the staging database.
    pub async fn frame(&mut self, f: &Frame) -> Result<u64> {
        let keys = frame_keys(self.sectioned, f)?;
        self.r.select(self.stage).await?;
        let ttls: Vec<String> = keys.iter().map(|k| k.pttl.max(0).to_string()).collect();
        let mut cmds: Vec<Vec<&[u8]>> = Vec::with_capacity(keys.len());
        for (k, ttl) in keys.iter().zip(&ttls) {
            if k.name.as_slice() == OWNER_KEY.as_bytes() || k.pttl < -1 {
                continue;
            }
            cmds.push(vec![
                b"RESTORE",
                &k.name,
                ttl.as_bytes(),
                &k.payload,
                b"REPLACE",
            ]);
        }
        restore(&mut self.r, &cmds).await?;
        self.keys += cmds.len() as u64;
        Ok(cmds.len() as u64)
    }

    pub fn end(&mut self, e: &SectionEnd) -> Result<(u64, u64)> {
        keys_at_end(e, self.keys)
    }

    /// Exchanges the claims and the databases in one transaction.
    pub async fn swap(&mut self) -> Result<()> {
        let (imp, old) = staging_claims(&self.lane);
        self.r.select(self.stage).await?;
        if self.r.owner().await?.as_deref() != Some(imp.as_str()) {
            return Err(DataError::Guard(format!(
                "the staging database {} lost its claim; nothing was swapped",
                self.stage
            )));
        }
        let (live, stage) = (self.live.to_string(), self.stage.to_string());
        let lane = self.lane.to_string();
        let cmds: Vec<Vec<&[u8]>> = vec![
            vec![b"MULTI"],
            vec![b"SELECT", stage.as_bytes()],
            vec![b"SET", OWNER_KEY.as_bytes(), lane.as_bytes()],
            vec![b"SELECT", live.as_bytes()],
            vec![b"SET", OWNER_KEY.as_bytes(), old.as_bytes()],
            vec![b"SWAPDB", live.as_bytes(), stage.as_bytes()],
            vec![b"EXEC"],
        ];
        let replies = self.r.pipeline(&cmds).await?;
        match replies.last() {
            Some(Reply::Array(Some(results)))
                if results.iter().all(|r| !matches!(r, Reply::Error(_))) => {}
            other => {
                return Err(DataError::Server {
                    what: "Redis",
                    address: self.r.address().to_owned(),
                    message: format!("the swap transaction failed: {other:?} ({replies:?})"),
                });
            }
        }
        Ok(())
    }

    /// Flushes the staging database (the old keys after a swap, or the staged ones instead of it).
    pub async fn abort(mut self) {
        let r = clean_staging(&mut self.r, &self.lane, self.stage, self.stage).await;
        if let Err(e) = r {
            tracing::warn!(lane = %self.lane, error = %e, "could not flush the staging database; the next import or the lane's teardown does");
        }
    }
}

// ---- Key-prefix mode ----

/// The root of lane `lane`'s staging keys in key-prefix mode: `lane:<id>$imp`. The marker key is
/// exactly this; an import stages under `lane:<id>$imp:<token>:`.
pub fn staging_root(lane: &LaneId) -> String {
    format!("lane:{lane}$imp")
}

/// The database and the lane's prefix of a key-prefix binding, `target` checked to be exactly
/// the lane's prefix.
fn own_prefix(lane: &LaneId, spec: &DataSpec, target: &str) -> Result<(u32, String)> {
    let DataOptions::Redis {
        index,
        mode: RedisMode::Prefix { .. },
        ..
    } = &spec.options
    else {
        return Err(DataError::Invalid(format!(
            "binding `{}` is not a Redis binding in key-prefix mode",
            spec.name
        )));
    };
    let own = redis_prefix(lane);
    if target != own {
        return Err(DataError::Guard(format!(
            "`{target}` is not lane `{lane}`'s key prefix (that is `{own}`)"
        )));
    }
    Ok((*index, own))
}

/// Deletes the leftovers of lane `lane`'s interrupted imports in key-prefix mode (every key
/// starting with [`staging_root`], the marker included) in database `index`. Returns how many.
pub async fn clean_prefix_staging(r: &mut Redis, lane: &LaneId, index: u32) -> Result<u64> {
    r.delete_prefix(index, &staging_root(lane)).await
}

/// Writes the section of a key-prefix binding: the lane's keys, without the prefix.
pub async fn export_prefix<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut Writer<W>,
    lane: &LaneId,
    spec: &DataSpec,
    target: &str,
    progress: OnProgress<'_>,
    cancel: &Cancel,
) -> Result<SectionEnd> {
    let (index, prefix) = own_prefix(lane, spec, target)?;
    let mut r = Redis::connect(&spec.address).await?;
    r.select(index).await?;
    // DBSIZE counts baseline's keys too: no estimate.
    export_keys(
        w,
        &mut r,
        &spec.name,
        &prefix,
        Some(&prefix),
        0,
        progress,
        cancel,
    )
    .await
}

/// The swap of key-prefix mode, run by Redis as one script (atomically: no client sees a half
/// state). ARGV: the lane's prefix, its SCAN pattern, the staging prefix, its pattern, the marker
/// key, the import's token. Deletes the lane's keys, renames the staged ones into the prefix,
/// deletes the marker; refuses when the marker holds another import's token.
const PREFIX_SWAP: &str = r#"
if redis.call('GET', ARGV[5]) ~= ARGV[6] then
  return redis.error_reply('LANE another import into the lane started after this one; nothing was swapped')
end
local function collect(prefix, pattern)
  local out = {}
  local cursor = '0'
  repeat
    local r = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = r[1]
    for _, k in ipairs(r[2]) do
      if string.sub(k, 1, #prefix) == prefix then out[#out + 1] = k end
    end
  until cursor == '0'
  return out
end
local old = collect(ARGV[1], ARGV[2])
for i = 1, #old do redis.call('DEL', old[i]) end
local new = collect(ARGV[3], ARGV[4])
for i = 1, #new do
  redis.call('RENAME', new[i], ARGV[1] .. string.sub(new[i], #ARGV[3] + 1))
end
redis.call('DEL', ARGV[5])
return {#old, #new}
"#;

/// Deletes the marker when it still holds ARGV[1].
const DROP_MARKER: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('DEL', KEYS[1]) end return 0";

/// A key-prefix binding's import, staged under the lane's staging prefix.
pub struct PrefixStaging {
    r: Redis,
    lane: LaneId,
    index: u32,
    prefix: String,
    stage: String,
    token: String,
    keys: u64,
    sectioned: bool,
}

impl PrefixStaging {
    /// Checks `target` is the lane's prefix, deletes leftovers of interrupted imports into the
    /// lane, and marks the staging as this import's.
    pub async fn prepare(lane: &LaneId, spec: &DataSpec, target: &str) -> Result<PrefixStaging> {
        let (index, prefix) = own_prefix(lane, spec, target)?;
        let mut r = Redis::connect(&spec.address).await?;
        let left = clean_prefix_staging(&mut r, lane, index).await?;
        if left > 0 {
            tracing::info!(%lane, binding = %spec.name, "deleted {left} staged key(s) left by an interrupted import");
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let token = format!("{:x}-{nanos:x}", std::process::id());
        let root = staging_root(lane);
        r.select(index).await?;
        r.cmd(&[b"SET", root.as_bytes(), token.as_bytes()]).await?;
        Ok(PrefixStaging {
            r,
            lane: lane.clone(),
            index,
            prefix,
            stage: format!("{root}:{token}:"),
            token,
            keys: 0,
            sectioned: false,
        })
    }

    pub fn section(&mut self, s: &Section) -> Result<()> {
        super::expect_kind(s, "redis")?;
        self.sectioned = true;
        Ok(())
    }

    /// Restores one frame's keys under the staging prefix.
    pub async fn frame(&mut self, f: &Frame) -> Result<u64> {
        let keys = frame_keys(self.sectioned, f)?;
        self.r.select(self.index).await?;
        let staged: Vec<(Vec<u8>, String)> = keys
            .iter()
            .filter(|k| k.pttl >= -1)
            .map(|k| {
                let mut name = self.stage.as_bytes().to_vec();
                name.extend_from_slice(&k.name);
                (name, k.pttl.max(0).to_string())
            })
            .collect();
        let mut cmds: Vec<Vec<&[u8]>> = Vec::with_capacity(staged.len());
        for (k, (name, ttl)) in keys.iter().filter(|k| k.pttl >= -1).zip(&staged) {
            cmds.push(vec![
                b"RESTORE",
                name,
                ttl.as_bytes(),
                &k.payload,
                b"REPLACE",
            ]);
        }
        restore(&mut self.r, &cmds).await?;
        self.keys += cmds.len() as u64;
        Ok(cmds.len() as u64)
    }

    pub fn end(&mut self, e: &SectionEnd) -> Result<(u64, u64)> {
        keys_at_end(e, self.keys)
    }

    /// Replaces the lane's keys with the staged ones in one script.
    pub async fn swap(&mut self) -> Result<()> {
        self.r.select(self.index).await?;
        let root = staging_root(&self.lane);
        let lane_pattern = format!("{}*", glob_escape(&self.prefix));
        let stage_pattern = format!("{}*", glob_escape(&self.stage));
        let reply = self
            .r
            .raw(&[
                b"EVAL",
                PREFIX_SWAP.as_bytes(),
                b"0",
                self.prefix.as_bytes(),
                lane_pattern.as_bytes(),
                self.stage.as_bytes(),
                stage_pattern.as_bytes(),
                root.as_bytes(),
                self.token.as_bytes(),
            ])
            .await?;
        match reply {
            Reply::Array(Some(_)) => Ok(()),
            Reply::Error(e) if e.contains("another import") => Err(DataError::Guard(format!(
                "lane `{}`: {}",
                self.lane,
                e.trim_start_matches("LANE ")
            ))),
            other => Err(DataError::Server {
                what: "Redis",
                address: self.r.address().to_owned(),
                message: format!("the swap script failed: {other:?}"),
            }),
        }
    }

    /// Deletes this import's staged keys (none are left after a swap) and its marker.
    pub async fn abort(mut self) {
        let root = staging_root(&self.lane);
        let r = async {
            self.r.delete_prefix(self.index, &self.stage).await?;
            self.r
                .cmd(&[
                    b"EVAL",
                    DROP_MARKER.as_bytes(),
                    b"1",
                    root.as_bytes(),
                    self.token.as_bytes(),
                ])
                .await
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(lane = %self.lane, error = %e, "could not delete the staged keys; the next import or the lane's teardown does");
        }
    }
}

/// Sends a batch of `RESTORE` commands in one pipeline; a key Redis refuses is an error of the
/// file's.
async fn restore(r: &mut Redis, cmds: &[Vec<&[u8]>]) -> Result<()> {
    for reply in &r.pipeline(cmds).await? {
        if let Reply::Error(e) = reply {
            return Err(DataError::Format(format!(
                "Redis at {} refused a key of the file: {e} (a payload from an incompatible \
                 Redis version, or a corrupt one)",
                r.address()
            )));
        }
    }
    Ok(())
}

/// The keys of a frame of a Redis section (which must have been opened).
fn frame_keys(sectioned: bool, f: &Frame) -> Result<Vec<format::Key>> {
    if !sectioned || f.tag != TAG_REDIS_KEYS {
        return Err(DataError::Format(format!(
            "a frame of tag {} in a Redis section",
            f.tag
        )));
    }
    format::decode_keys(&f.payload)
}

/// The keys a section staged, checked against the count its end frame says.
fn keys_at_end(e: &SectionEnd, keys: u64) -> Result<(u64, u64)> {
    if e.items != keys {
        return Err(DataError::Format(format!(
            "section `{}` closes with {} keys but holds {keys}",
            e.binding, e.items
        )));
    }
    Ok((keys, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mode: RedisMode) -> DataSpec {
        DataSpec {
            name: "sessions".into(),
            address: "redis://127.0.0.1:1/0".into(),
            env: "R".into(),
            options: DataOptions::Redis {
                index: 0,
                mode,
                copy: None,
            },
        }
    }

    #[test]
    fn the_staging_root_is_no_lanes_keys() {
        let ids = ["feat", "feat-a", "a", "feat-a-b"];
        for id in ids {
            let lane: LaneId = id.parse().unwrap();
            let root = staging_root(&lane);
            assert_eq!(root, format!("lane:{id}$imp"));
            for other in ids {
                let p = redis_prefix(&other.parse().unwrap());
                assert!(!p.starts_with(&root) && !root.starts_with(&p), "{root} {p}");
            }
        }
    }

    #[test]
    fn only_the_lanes_own_prefix_is_taken() {
        let lane: LaneId = "feat-a".parse().unwrap();
        let s = spec(RedisMode::Prefix {
            prefix_env: "P".into(),
        });
        assert_eq!(
            own_prefix(&lane, &s, "lane:feat-a:").unwrap(),
            (0, "lane:feat-a:".to_owned())
        );
        for bad in [
            "",
            "lane:",
            "lane:feat-b:",
            "lane:feat-a",
            "lane:feat-a$imp:",
        ] {
            assert!(
                matches!(own_prefix(&lane, &s, bad), Err(DataError::Guard(_))),
                "{bad}"
            );
        }
        let db = spec(RedisMode::Database { first: 1, last: 2 });
        assert!(matches!(
            own_prefix(&lane, &db, "lane:feat-a:"),
            Err(DataError::Invalid(_))
        ));
    }
}
