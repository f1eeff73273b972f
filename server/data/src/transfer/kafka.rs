//! Kafka in a lane data file: for each topic of the binding, the lane topic's shape (partition
//! count, topic-level configs) and every record of every partition, from the earliest offset up
//! to the high watermark taken when the export started (key, value, headers, timestamp; a null
//! key or value stays null), in frames of about a megabyte.
//!
//! Kafka cannot rename a topic, so an import cannot swap one in. It works in three steps:
//!
//! 1. *stage*: each topic's records go to a staging topic `<topic>.lane-<id>.staging` (the
//!    guard knows the name as the lane's own), made with the lane topic's partition count plus
//!    one: partition `n` of the file goes to partition `n`, in order; the extra last partition is
//!    for the seal. Nothing of the lane's topics changes; a failure, a cancel or a killed process
//!    here leaves them as they were, and the staging topics are deleted then, by the next
//!    import or restore into the lane, or by its teardown.
//! 2. *seal*: once the whole file has been read and checked, the lane's consumer groups get the
//!    lane topic's current end offsets committed (so they read the imported records, which start
//!    there; a group with live members is an error before anything changed), and a seal record
//!    (the topics and their record counts per partition) is written to the seal partition of the
//!    first staging topic.
//! 3. *swap*, topic by topic: every staging partition is checked to hold its records; then, for
//!    each partition, the groups' offsets are set to the lane partition's end offset again and
//!    its records up to there deleted (`DeleteRecords`); then the staged records are appended,
//!    the partitions copied at once, each in order. Then the staging topics are deleted, the
//!    sealed one last.
//!
//! An import or restore that finds a sealed staging topic (an import killed during the swap)
//! redoes the swap from the staging topics first (each partition redone whole: its records up to
//! the end are deleted and the staged ones appended again), then removes them; staging topics
//! without a seal are simply deleted. Offsets in the lane topic do not restart: the imported
//! records follow the old end offsets.

use chrono::TimeZone;
use lane_core::LaneId;
use lane_core::data::{DataOptions, DataSpec, check_topic, rewrite_group, rewrite_topic};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient};
use rskafka::record::Record;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWrite;

use super::format::{
    Cursor, Frame, KafkaTopic, Section, SectionEnd, TAG_KAFKA_RECORDS, TAG_KAFKA_TOPIC, Writer,
};
use super::{Cancel, OnProgress, Progress};
use crate::error::{DataError, Result};
use crate::kafka::{Kafka, TopicShape};

/// What a staging topic's name adds to the lane topic's.
pub const STAGING_SUFFIX: &str = ".staging";
/// About this many bytes of records per frame, and per fetch.
const FRAME_BYTES: usize = 1 << 20;
/// About this many bytes of records per produce request.
const PRODUCE_BYTES: usize = 512 << 10;
const FETCH_WAIT_MS: i32 = 500;
const DELETE_TIMEOUT_MS: i32 = 30_000;
const NULL: u32 = u32::MAX;

/// A record as the file holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KRecord {
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl KRecord {
    fn size(&self) -> usize {
        24 + self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| 8 + k.len() + v.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
    }

    fn from_kafka(r: Record) -> KRecord {
        KRecord {
            timestamp: r.timestamp.timestamp_millis(),
            key: r.key,
            value: r.value,
            headers: r
                .headers
                .into_iter()
                .map(|(k, v)| (k.into_bytes(), Some(v)))
                .collect(),
        }
    }

    fn to_kafka(&self) -> Result<Record> {
        let timestamp = chrono::Utc
            .timestamp_millis_opt(self.timestamp)
            .single()
            .ok_or_else(|| {
                DataError::Format(format!(
                    "a Kafka record's timestamp {} is out of range",
                    self.timestamp
                ))
            })?;
        let mut headers = std::collections::BTreeMap::new();
        for (k, v) in &self.headers {
            let name = String::from_utf8(k.clone()).map_err(|_| {
                DataError::Invalid(
                    "a Kafka record of the file has a header name that is not UTF-8, which \
                     lane's Kafka client cannot write"
                        .into(),
                )
            })?;
            headers.insert(name, v.clone().unwrap_or_default());
        }
        Ok(Record {
            key: self.key.clone(),
            value: self.value.clone(),
            headers,
            timestamp,
        })
    }
}

fn put_value(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => out.extend_from_slice(&NULL.to_be_bytes()),
        Some(b) => {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

/// A records frame's payload: `partition`'s `records`, in order.
pub fn encode_records(partition: i32, records: &[KRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + records.iter().map(KRecord::size).sum::<usize>());
    out.extend_from_slice(&(partition as u32).to_be_bytes());
    out.extend_from_slice(&(records.len() as u32).to_be_bytes());
    for r in records {
        out.extend_from_slice(&r.timestamp.to_be_bytes());
        put_value(&mut out, r.key.as_deref());
        put_value(&mut out, r.value.as_deref());
        out.extend_from_slice(&(r.headers.len() as u32).to_be_bytes());
        for (k, v) in &r.headers {
            put_value(&mut out, Some(k));
            put_value(&mut out, v.as_deref());
        }
    }
    out
}

/// The partition and records of a records frame.
pub fn decode_records(payload: &[u8]) -> Result<(i32, Vec<KRecord>)> {
    let mut c = Cursor::new(payload);
    let partition = c.u32()?;
    let partition = i32::try_from(partition)
        .map_err(|_| DataError::Format(format!("a Kafka partition {partition} out of range")))?;
    let n = c.u32()? as usize;
    let mut records = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let timestamp = c.i64()?;
        let key = c.value()?;
        let value = c.value()?;
        let h = c.u32()? as usize;
        let mut headers = Vec::with_capacity(h.min(1 << 10));
        for _ in 0..h {
            let name = c
                .value()?
                .ok_or_else(|| DataError::Format("a Kafka record header without a name".into()))?;
            headers.push((name, c.value()?));
        }
        records.push(KRecord {
            timestamp,
            key,
            value,
            headers,
        });
    }
    c.done()?;
    Ok((partition, records))
}

/// The staging topic of lane `lane`'s copy of baseline topic `baseline`.
pub fn staging_topic(baseline: &str, lane: &LaneId) -> String {
    format!("{}{STAGING_SUFFIX}", rewrite_topic(baseline, lane))
}

/// The guard for deleting a staging topic: exactly lane `lane`'s staging topic of `baseline`.
pub fn check_staging_delete(baseline: &str, lane: &LaneId, topic: &str) -> Result<()> {
    check_topic(baseline).map_err(|e| DataError::Guard(format!("`{topic}`: {e}")))?;
    let own = staging_topic(baseline, lane);
    if topic != own || topic == baseline {
        return Err(DataError::Guard(format!(
            "`{topic}` is not lane `{lane}`'s staging topic (that is `{own}`); nothing was deleted"
        )));
    }
    Ok(())
}

/// Deletes lane `lane`'s staging topic of `baseline` (a leftover of an interrupted import),
/// after the guard; whether there was one.
pub async fn delete_staging(k: &mut Kafka, baseline: &str, lane: &LaneId) -> Result<bool> {
    let topic = staging_topic(baseline, lane);
    check_staging_delete(baseline, lane, &topic)?;
    k.delete_checked(&topic).await
}

/// The binding's baseline topics (sorted, once each) with the lane's topic of each, checked
/// against what the lane records (`target`: its topics, comma-separated).
pub fn lane_topics(lane: &LaneId, spec: &DataSpec, target: &str) -> Result<Vec<(String, String)>> {
    let DataOptions::Kafka { topics, .. } = &spec.options else {
        return Err(DataError::Invalid(format!(
            "binding `{}` is not a Kafka binding",
            spec.name
        )));
    };
    let mut baselines: Vec<&String> = topics.values().collect();
    baselines.sort();
    baselines.dedup();
    let recorded: Vec<&str> = target.split(',').filter(|t| !t.is_empty()).collect();
    let mut out = Vec::new();
    for b in baselines {
        check_topic(b).map_err(DataError::Invalid)?;
        let own = rewrite_topic(b, lane);
        check_topic(&own).map_err(DataError::Invalid)?;
        out.push((b.clone(), own));
    }
    if let Some(other) = recorded.iter().find(|r| !out.iter().any(|(_, o)| o == *r)) {
        return Err(DataError::Guard(format!(
            "binding `{}`: lane `{lane}` records topic `{other}`, which is not its copy of any \
             topic the binding names",
            spec.name
        )));
    }
    Ok(out)
}

/// The lane's consumer groups of the binding.
fn lane_groups(lane: &LaneId, spec: &DataSpec) -> Vec<String> {
    let DataOptions::Kafka { groups, .. } = &spec.options else {
        return Vec::new();
    };
    let mut out: Vec<String> = groups.values().map(|g| rewrite_group(g, lane)).collect();
    out.sort();
    out.dedup();
    out
}

async fn lane_shape(
    k: &mut Kafka,
    lane: &LaneId,
    spec: &DataSpec,
    own: &str,
) -> Result<TopicShape> {
    k.shape(own).await?.ok_or_else(|| {
        DataError::Invalid(format!(
            "binding `{}`: lane `{lane}`'s topic `{own}` does not exist on {} (deploy the \
             service that declares the binding into the lane first)",
            spec.name,
            k.address()
        ))
    })
}

async fn offset(k: &Kafka, pc: &PartitionClient, at: OffsetAt) -> Result<i64> {
    pc.get_offset(at).await.map_err(|e| {
        k.server(format!(
            "offsets of `{}`/{}: {e}",
            pc.topic(),
            pc.partition()
        ))
    })
}

/// Writes the section of Kafka binding `spec` (lane `lane`'s topics, `target` as the lane
/// records them).
pub async fn export<W: AsyncWrite + Unpin>(
    w: &mut Writer<W>,
    lane: &LaneId,
    spec: &DataSpec,
    target: &str,
    progress: OnProgress<'_>,
    cancel: &Cancel,
) -> Result<SectionEnd> {
    let topics = lane_topics(lane, spec, target)?;
    let mut k = Kafka::connect(&spec.address).await?;
    // Every topic's shape and offsets first: the end offsets are those of the export's start.
    let mut plan = Vec::new();
    let mut total = 0u64;
    for (baseline, own) in &topics {
        let shape = lane_shape(&mut k, lane, spec, own).await?;
        let (mut start, mut end) = (Vec::new(), Vec::new());
        for p in 0..shape.partitions {
            let pc = k.partition(own, p).await?;
            start.push(offset(&k, &pc, OffsetAt::Earliest).await?);
            end.push(offset(&k, &pc, OffsetAt::Latest).await?);
        }
        total += end
            .iter()
            .zip(&start)
            .map(|(e, s)| (e - s).max(0) as u64)
            .sum::<u64>();
        plan.push((
            own.clone(),
            KafkaTopic {
                topic: baseline.clone(),
                partitions: shape.partitions,
                configs: shape.configs,
                start,
                end,
            },
        ));
    }
    w.json(
        super::format::TAG_SECTION,
        &Section {
            binding: spec.name.clone(),
            kind: "kafka".into(),
            source: lane.to_string(),
            charset: None,
        },
    )
    .await?;
    let mut done = 0u64;
    for (own, t) in &plan {
        w.json(TAG_KAFKA_TOPIC, t).await?;
        for p in 0..t.partitions {
            let pc = k.partition(own, p).await?;
            let end = t.end[p as usize];
            let mut at = t.start[p as usize];
            let mut batch: Vec<KRecord> = Vec::new();
            let mut bytes = 0;
            while at < end {
                cancel.check()?;
                let (records, _) = pc
                    .fetch_records(at, 1..FRAME_BYTES as i32, FETCH_WAIT_MS)
                    .await
                    .map_err(|e| k.server(format!("fetching `{own}`/{p} at {at}: {e}")))?;
                let before = at;
                for r in records {
                    if r.offset < at {
                        continue;
                    }
                    if r.offset >= end {
                        at = end;
                        break;
                    }
                    at = r.offset + 1;
                    let r = KRecord::from_kafka(r.record);
                    bytes += r.size();
                    batch.push(r);
                }
                if at == before {
                    return Err(k.server(format!(
                        "fetching `{own}`/{p} at offset {at} (below the end offset {end}) \
                         returned no record (records removed by retention meanwhile, or only \
                         transaction markers, which lane does not export)"
                    )));
                }
                if bytes >= FRAME_BYTES || (at >= end && !batch.is_empty()) {
                    w.frame(TAG_KAFKA_RECORDS, &encode_records(p, &batch))
                        .await?;
                    done += batch.len() as u64;
                    batch.clear();
                    bytes = 0;
                    progress(&Progress {
                        binding: spec.name.clone(),
                        step: "export",
                        done,
                        total: total.max(done),
                        unit: "records",
                    });
                }
            }
        }
    }
    let end = SectionEnd {
        binding: spec.name.clone(),
        items: done,
        objects: plan.len() as u64,
    };
    w.json(super::format::TAG_SECTION_END, &end).await?;
    Ok(end)
}

/// What the seal partition of a staging topic holds once the file is staged whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Seal {
    lane: String,
    /// Every topic staged, with its record count per partition.
    topics: Vec<SealTopic>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SealTopic {
    /// The baseline topic.
    topic: String,
    counts: Vec<i64>,
}

/// Appends `records` to `pc` in requests of bounded size.
async fn produce(k: &Kafka, pc: &PartitionClient, records: &[KRecord]) -> Result<()> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    for (i, r) in records.iter().enumerate() {
        bytes += r.size();
        batch.push(r.to_kafka()?);
        if bytes >= PRODUCE_BYTES || i + 1 == records.len() {
            pc.produce(std::mem::take(&mut batch), Compression::NoCompression)
                .await
                .map_err(|e| {
                    k.server(format!(
                        "producing to `{}`/{}: {e}",
                        pc.topic(),
                        pc.partition()
                    ))
                })?;
            bytes = 0;
        }
    }
    Ok(())
}

/// Sets `groups`' committed offset of `topic`/`partition` to `offset`.
async fn commit_groups(
    k: &mut Kafka,
    groups: &[String],
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<()> {
    for g in groups {
        k.commit_group_offset(g, topic, partition, offset).await?;
    }
    Ok(())
}

fn server_error(address: &str, message: String) -> DataError {
    DataError::Server {
        what: "Kafka",
        address: address.to_owned(),
        message,
    }
}

/// Replaces the records of each partition `p` of `own` with the `counts[p]` records of
/// `staging`/`p`: every staging partition is checked to hold its records, then each lane
/// partition's groups' offsets are set to its end offset and its records up to there deleted,
/// then the partitions are copied, all at once (each in order).
async fn swap_topic(
    k: &mut Kafka,
    groups: &[String],
    own: &str,
    staging: &str,
    counts: &[i64],
) -> Result<()> {
    let mut pairs = Vec::new();
    for (p, count) in counts.iter().enumerate() {
        let p = p as i32;
        let staged = k.partition(staging, p).await?;
        let held = offset(k, &staged, OffsetAt::Latest).await?;
        if held < *count {
            return Err(k.server(format!(
                "the staging topic `{staging}`/{p} holds {held} records, not the {count} \
                 staged; nothing of `{own}` was changed by this swap"
            )));
        }
        pairs.push((staged, k.partition(own, p).await?, *count));
    }
    for (_, live, _) in &pairs {
        let p = live.partition();
        let end = offset(k, live, OffsetAt::Latest).await?;
        commit_groups(k, groups, own, p, end).await?;
        live.delete_records(end, DELETE_TIMEOUT_MS)
            .await
            .map_err(|e| k.server(format!("deleting the records of `{own}`/{p}: {e}")))?;
    }
    let mut copies = tokio::task::JoinSet::new();
    for (staged, live, count) in pairs {
        copies.spawn(copy_partition(staged, live, count, k.address().to_owned()));
    }
    while let Some(done) = copies.join_next().await {
        done.map_err(|e| k.server(format!("copying a partition of `{staging}`: {e}")))??;
    }
    Ok(())
}

/// Appends the first `count` records of `staged` to `live`, in order.
async fn copy_partition(
    staged: PartitionClient,
    live: PartitionClient,
    count: i64,
    address: String,
) -> Result<()> {
    let (staging, p) = (staged.topic().to_owned(), staged.partition());
    let mut at = 0;
    while at < count {
        let (records, _) = staged
            .fetch_records(at, 1..FRAME_BYTES as i32, FETCH_WAIT_MS)
            .await
            .map_err(|e| {
                server_error(&address, format!("fetching `{staging}`/{p} at {at}: {e}"))
            })?;
        let mut batch = Vec::new();
        let mut bytes = 0;
        for r in records {
            if r.offset < at || r.offset >= count {
                continue;
            }
            at = r.offset + 1;
            bytes += r.record.approximate_size();
            batch.push(r.record);
        }
        if batch.is_empty() {
            return Err(server_error(
                &address,
                format!(
                    "the staging topic `{staging}`/{p} holds fewer records than staged ({at} of \
                     {count})"
                ),
            ));
        }
        // A fetch returns about a megabyte: produced in two requests or so.
        let per = batch.len().div_ceil(bytes.div_ceil(PRODUCE_BYTES).max(1));
        let mut rest = batch.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<Record> = rest.by_ref().take(per).collect();
            live.produce(chunk, Compression::NoCompression)
                .await
                .map_err(|e| {
                    server_error(
                        &address,
                        format!("producing to `{}`/{p}: {e}", live.topic()),
                    )
                })?;
        }
    }
    Ok(())
}

/// The seal of staging topic `staging` (`partitions` with the seal partition), if written.
async fn read_seal(k: &Kafka, staging: &str, partitions: i32) -> Result<Option<Seal>> {
    let pc = k.partition(staging, partitions - 1).await?;
    if offset(k, &pc, OffsetAt::Latest).await? == 0 {
        return Ok(None);
    }
    let (records, _) = pc
        .fetch_records(0, 1..FRAME_BYTES as i32, FETCH_WAIT_MS)
        .await
        .map_err(|e| k.server(format!("reading the seal of `{staging}`: {e}")))?;
    let Some(r) = records.into_iter().next() else {
        return Ok(None);
    };
    let seal = serde_json::from_slice(r.record.value.as_deref().unwrap_or_default())
        .map_err(|e| k.server(format!("the seal of `{staging}` is not valid: {e}")))?;
    Ok(Some(seal))
}

/// Swaps the topics of `seal` whose staging topics are there, then deletes the staging topics,
/// `holder` (the sealed one) last.
async fn finish(
    k: &mut Kafka,
    lane: &LaneId,
    groups: &[String],
    seal: &Seal,
    present: &[(String, String, String)],
    holder: &str,
) -> Result<()> {
    for t in &seal.topics {
        let Some((_, own, staging)) = present.iter().find(|(b, ..)| *b == t.topic) else {
            continue; // swapped and removed before
        };
        swap_topic(k, groups, own, staging, &t.counts).await?;
    }
    for (b, ..) in present.iter().filter(|(b, ..)| b != holder) {
        delete_staging(k, b, lane).await?;
    }
    delete_staging(k, holder, lane).await?;
    Ok(())
}

/// Deals with what an interrupted import left: finishes a sealed swap, removes unsealed staging.
async fn recover(
    k: &mut Kafka,
    lane: &LaneId,
    groups: &[String],
    topics: &[(String, String)],
) -> Result<()> {
    let mut present = Vec::new();
    let mut seal = None;
    for (b, own) in topics {
        let staging = staging_topic(b, lane);
        if let Some(shape) = k.shape(&staging).await? {
            if seal.is_none()
                && let Some(s) = read_seal(k, &staging, shape.partitions).await?
            {
                seal = Some((s, b.clone()));
            }
            present.push((b.clone(), own.clone(), staging));
        }
    }
    if present.is_empty() {
        return Ok(());
    }
    match seal {
        Some((s, holder)) => {
            tracing::info!(%lane, topics = s.topics.len(), "completing the swap of an interrupted Kafka import from its staging topics");
            finish(k, lane, groups, &s, &present, &holder).await
        }
        None => {
            for (b, ..) in &present {
                delete_staging(k, b, lane).await?;
            }
            tracing::info!(%lane, n = present.len(), "deleted staging topics left by an interrupted Kafka import");
            Ok(())
        }
    }
}

struct StagedTopic {
    baseline: String,
    own: String,
    staging: String,
    counts: Vec<i64>,
    /// The oldest and newest timestamps staged (ms).
    oldest: i64,
    newest: i64,
    /// The lane topic's bounds on record timestamps relative to now (ms): `before`, `after`
    /// (topic-level `message.timestamp.before.max.ms` / `after.max.ms`, or the older
    /// `difference.max.ms` for both), when it stamps records with their own time.
    bounds: (Option<i64>, Option<i64>),
}

/// The bounds a lane topic with `configs` puts on the timestamps of records it takes.
fn timestamp_bounds(configs: &[(String, String)]) -> (Option<i64>, Option<i64>) {
    let get = |name: &str| {
        configs
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.parse::<i64>().ok())
    };
    if configs
        .iter()
        .any(|(n, v)| n == "message.timestamp.type" && v == "LogAppendTime")
    {
        return (None, None);
    }
    let difference = get("message.timestamp.difference.max.ms");
    (
        get("message.timestamp.before.max.ms").or(difference),
        get("message.timestamp.after.max.ms").or(difference),
    )
}

impl StagedTopic {
    /// Refuses records the lane topic would not take (before anything of the lane changes).
    fn check_timestamps(&self, now: i64) -> Result<()> {
        if self.counts.iter().all(|c| *c == 0) {
            return Ok(());
        }
        if let Some(before) = self.bounds.0
            && now.saturating_sub(self.oldest) > before
        {
            return Err(DataError::Invalid(format!(
                "lane topic `{}` takes records at most {before} ms older than now \
                 (`message.timestamp.before.max.ms`); the file's oldest record of `{}` is {} ms \
                 old; nothing of the lane was changed",
                self.own,
                self.baseline,
                now.saturating_sub(self.oldest)
            )));
        }
        if let Some(after) = self.bounds.1
            && self.newest.saturating_sub(now) > after
        {
            return Err(DataError::Invalid(format!(
                "lane topic `{}` takes records at most {after} ms newer than now \
                 (`message.timestamp.after.max.ms`); the file's newest record of `{}` is {} ms \
                 ahead; nothing of the lane was changed",
                self.own,
                self.baseline,
                self.newest.saturating_sub(now)
            )));
        }
        Ok(())
    }
}

/// A Kafka binding's import, staged in its staging topics.
pub struct Staging {
    k: Kafka,
    lane: LaneId,
    binding: String,
    groups: Vec<String>,
    /// The binding's topics: baseline, lane topic, the lane topic's shape.
    topics: Vec<(String, String, TopicShape)>,
    staged: Vec<StagedTopic>,
    current: Option<usize>,
    records: u64,
    sectioned: bool,
    /// The seal is written: the staging topics are kept on failure, for the next import.
    sealed: bool,
}

impl Staging {
    /// Checks the lane's topics, then finishes or removes what an interrupted import left.
    pub async fn prepare(lane: &LaneId, spec: &DataSpec, target: &str) -> Result<Staging> {
        let pairs = lane_topics(lane, spec, target)?;
        let mut k = Kafka::connect(&spec.address).await?;
        let mut topics = Vec::new();
        for (b, own) in &pairs {
            let shape = lane_shape(&mut k, lane, spec, own).await?;
            if let Some((_, policy)) = shape.configs.iter().find(|(n, _)| n == "cleanup.policy")
                && !policy.contains("delete")
            {
                return Err(DataError::Invalid(format!(
                    "binding `{}`: lane topic `{own}` has `cleanup.policy={policy}`; Kafka \
                     deletes no records of a compacted-only topic, so lane cannot replace them \
                     (import into a topic whose policy includes `delete`)",
                    spec.name
                )));
            }
            topics.push((b.clone(), own.clone(), shape));
        }
        let groups = lane_groups(lane, spec);
        recover(&mut k, lane, &groups, &pairs).await?;
        Ok(Staging {
            k,
            lane: lane.clone(),
            binding: spec.name.clone(),
            groups,
            topics,
            staged: Vec::new(),
            current: None,
            records: 0,
            sectioned: false,
            sealed: false,
        })
    }

    pub fn section(&mut self, s: &Section) -> Result<()> {
        super::expect_kind(s, "kafka")?;
        self.sectioned = true;
        Ok(())
    }

    /// Makes the staging topic of a topic frame, or stages a records frame.
    pub async fn frame(&mut self, f: &Frame, cancel: &Cancel) -> Result<u64> {
        cancel.check()?;
        match f.tag {
            TAG_KAFKA_TOPIC if self.sectioned => {
                let t: KafkaTopic = f.json("Kafka topic")?;
                self.topic(&t).await?;
                Ok(0)
            }
            TAG_KAFKA_RECORDS if self.sectioned => {
                let i = self.current.ok_or_else(|| {
                    DataError::Format("Kafka records before any topic frame".into())
                })?;
                let (p, records) = decode_records(&f.payload)?;
                let t = &mut self.staged[i];
                if p < 0 || p as usize >= t.counts.len() {
                    return Err(DataError::Format(format!(
                        "Kafka records of partition {p} of `{}`, which has {} partitions",
                        t.baseline,
                        t.counts.len()
                    )));
                }
                let pc = self.k.partition(&t.staging, p).await?;
                produce(&self.k, &pc, &records).await?;
                for r in &records {
                    t.oldest = t.oldest.min(r.timestamp);
                    t.newest = t.newest.max(r.timestamp);
                }
                t.counts[p as usize] += records.len() as i64;
                self.records += records.len() as u64;
                Ok(records.len() as u64)
            }
            tag => Err(DataError::Format(format!(
                "a frame of tag {tag} in a Kafka section"
            ))),
        }
    }

    async fn topic(&mut self, t: &KafkaTopic) -> Result<()> {
        let Some((baseline, own, shape)) = self.topics.iter().find(|(b, ..)| *b == t.topic) else {
            return Err(DataError::Invalid(format!(
                "the file's binding `{}` holds topic `{}`, which binding `{}` of lane `{}` does \
                 not bind (it binds {})",
                self.binding,
                t.topic,
                self.binding,
                self.lane,
                self.topics
                    .iter()
                    .map(|(b, ..)| format!("`{b}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if self.staged.iter().any(|s| s.baseline == t.topic) {
            return Err(DataError::Format(format!(
                "topic `{}` appears twice in binding `{}`",
                t.topic, self.binding
            )));
        }
        if t.partitions != shape.partitions {
            return Err(DataError::Invalid(format!(
                "topic `{}` has {} partitions in the file and lane `{}`'s `{own}` has {}; \
                 records keep their partition, so the counts must match",
                t.topic, t.partitions, self.lane, shape.partitions
            )));
        }
        let staging = staging_topic(baseline, &self.lane);
        // Records kept whatever their age (retention counts from their timestamps), as large as
        // the lane topic takes them, with the file's timestamps.
        let mut configs = vec![
            ("cleanup.policy".to_owned(), "delete".to_owned()),
            ("retention.ms".to_owned(), "-1".to_owned()),
            ("retention.bytes".to_owned(), "-1".to_owned()),
            ("message.timestamp.type".to_owned(), "CreateTime".to_owned()),
        ];
        configs.extend(
            shape
                .configs
                .iter()
                .filter(|(n, _)| n == "max.message.bytes")
                .cloned(),
        );
        let (partitions, replication) = (shape.partitions, shape.replication);
        let (baseline, own) = (baseline.clone(), own.clone());
        if !self
            .k
            .create_topic(&staging, partitions + 1, replication, &configs)
            .await?
        {
            return Err(DataError::Invalid(format!(
                "the staging topic `{staging}` exists: another import into lane `{}` is running",
                self.lane
            )));
        }
        let bounds = timestamp_bounds(&shape.configs);
        self.staged.push(StagedTopic {
            baseline,
            own,
            staging,
            counts: vec![0; partitions as usize],
            oldest: i64::MAX,
            newest: i64::MIN,
            bounds,
        });
        self.current = Some(self.staged.len() - 1);
        Ok(())
    }

    pub fn end(&mut self, e: &SectionEnd) -> Result<(u64, u64)> {
        if e.items != self.records || e.objects != self.staged.len() as u64 {
            return Err(DataError::Format(format!(
                "section `{}` closes with {} records of {} topics but holds {} of {}",
                e.binding,
                e.items,
                e.objects,
                self.records,
                self.staged.len()
            )));
        }
        Ok((self.records, self.staged.len() as u64))
    }

    /// Sets the lane's groups' offsets of the staged topics to the lane topics' end offsets (where
    /// the imported records will start; a group with members is an error, before anything of the
    /// lane changed), then writes the seal: from here on, an import cut short is completed by the
    /// next import or restore.
    pub async fn seal(&mut self) -> Result<()> {
        if self.staged.is_empty() || self.sealed {
            return Ok(());
        }
        let now = chrono::Utc::now().timestamp_millis();
        for t in &self.staged {
            t.check_timestamps(now)?;
        }
        for t in &self.staged {
            for p in 0..t.counts.len() as i32 {
                let pc = self.k.partition(&t.own, p).await?;
                let end = offset(&self.k, &pc, OffsetAt::Latest).await?;
                commit_groups(&mut self.k, &self.groups, &t.own, p, end).await?;
            }
        }
        self.staged.sort_by(|a, b| a.baseline.cmp(&b.baseline));
        let holder = &self.staged[0];
        let pc = self
            .k
            .partition(&holder.staging, holder.counts.len() as i32)
            .await?;
        let record = KRecord {
            timestamp: chrono::Utc::now().timestamp_millis(),
            key: None,
            value: Some(serde_json::to_vec(&self.seal_record()).expect("serialisable")),
            headers: Vec::new(),
        };
        produce(&self.k, &pc, std::slice::from_ref(&record)).await?;
        self.sealed = true;
        Ok(())
    }

    fn seal_record(&self) -> Seal {
        Seal {
            lane: self.lane.to_string(),
            topics: self
                .staged
                .iter()
                .map(|t| SealTopic {
                    topic: t.baseline.clone(),
                    counts: t.counts.clone(),
                })
                .collect(),
        }
    }

    /// Seals, swaps every staged topic partition by partition and deletes the staging topics.
    pub async fn swap(&mut self) -> Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        self.seal().await?;
        let seal = self.seal_record();
        let present: Vec<(String, String, String)> = self
            .staged
            .iter()
            .map(|t| (t.baseline.clone(), t.own.clone(), t.staging.clone()))
            .collect();
        let holder = self.staged[0].baseline.clone();
        finish(
            &mut self.k,
            &self.lane,
            &self.groups,
            &seal,
            &present,
            &holder,
        )
        .await?;
        self.sealed = false;
        self.staged.clear();
        Ok(())
    }

    /// Deletes the staging topics, unless sealed (a swap that failed half-way is completed by the
    /// next import or restore into the lane).
    pub async fn abort(mut self) {
        if self.sealed {
            tracing::warn!(lane = %self.lane, binding = %self.binding, "the Kafka swap stopped half-way; the next import or restore into the lane completes it from the staging topics");
            return;
        }
        for t in &self.staged {
            if let Err(e) = delete_staging(&mut self.k, &t.baseline, &self.lane).await {
                tracing::warn!(lane = %self.lane, topic = %t.staging, error = %e, "could not delete a staging topic; the next import or the lane's teardown does");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_nulls_and_headers() {
        let records = vec![
            KRecord {
                timestamp: 1_700_000_000_123,
                key: None,
                value: Some(vec![]),
                headers: vec![(b"h".to_vec(), Some(b"v".to_vec())), (b"n".to_vec(), None)],
            },
            KRecord {
                timestamp: -1,
                key: Some(vec![]),
                value: None,
                headers: vec![],
            },
        ];
        let bytes = encode_records(3, &records);
        assert_eq!(decode_records(&bytes).unwrap(), (3, records));
        assert!(decode_records(&bytes[..bytes.len() - 1]).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode_records(&extra).is_err());
    }

    #[test]
    fn the_guard_takes_only_the_lanes_staging_topic() {
        let lane: LaneId = "feat-a".parse().unwrap();
        assert_eq!(staging_topic("orders", &lane), "orders.lane-feat-a.staging");
        assert!(check_staging_delete("orders", &lane, "orders.lane-feat-a.staging").is_ok());
        for bad in [
            "orders",
            "orders.lane-feat-a",
            "orders.lane-feat-b.staging",
            "other.lane-feat-a.staging",
            "orders.staging",
        ] {
            assert!(
                matches!(
                    check_staging_delete("orders", &lane, bad),
                    Err(DataError::Guard(_))
                ),
                "{bad}"
            );
        }
    }
}
