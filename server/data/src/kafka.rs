//! Kafka: a lane's own topics `<topic>.lane-<id>`, made on the lane's first deploy with baseline's
//! partition count, replication factor and topic-level configs, and deleted on teardown.
//!
//! The client is [`rskafka`] (pure Rust: no librdkafka, no C build) for topic deletion, offsets,
//! producing and fetching. It has no `DescribeConfigs` and creates topics without configs, so
//! those requests (and `Metadata`, for the replication factor) are written here on Kafka's wire
//! format ([`wire`]).
//!
//! An address with credentials (`kafka://user:password@b1:9092?mechanism=SCRAM-SHA-256`) makes
//! every connection, rskafka's and lane's own, authenticate with SASL; see
//! [`lane_core::kafka_url`].

pub mod wire;

use std::time::Duration;

use lane_core::LaneId;
use lane_core::data::{check_topic, redact, rewrite_topic};
use lane_core::kafka_url::KafkaUrl;
use rskafka::BackoffConfig;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use rskafka::record::Record;
use serde::Serialize;

use crate::error::{DataError, Result};
use wire::{Conn, ConnectError, Mechanism, NewTopic, SOURCE_TOPIC, Sasl, TopicMeta};

/// The port of a broker named without one.
pub const DEFAULT_PORT: u16 = lane_core::kafka_url::DEFAULT_PORT;
/// How long the broker gets to create or delete a topic.
const ADMIN_TIMEOUT_MS: i32 = 30_000;
/// How long rskafka retries a broker that does not answer before giving up.
const RETRY_DEADLINE: Duration = Duration::from_secs(10);

/// The brokers of a `kafka://[user:password@]h1:p1,h2:p2` address, as `host:port`.
pub fn brokers(url: &str) -> Result<Vec<String>> {
    Ok(KafkaUrl::parse(url).map_err(DataError::Invalid)?.brokers)
}

/// rskafka's form of `sasl`.
fn rskafka_sasl(sasl: &Sasl) -> SaslConfig {
    let c = Credentials::new(sasl.user.clone(), sasl.password.clone());
    match sasl.mechanism {
        Mechanism::Plain => SaslConfig::Plain(c),
        Mechanism::ScramSha256 => SaslConfig::ScramSha256(c),
        Mechanism::ScramSha512 => SaslConfig::ScramSha512(c),
    }
}

/// The guard for deleting a topic: `topic` must be exactly lane `lane`'s topic for baseline topic
/// `baseline`, and never the baseline itself.
pub fn check_topic_delete(baseline: &str, lane: &LaneId, topic: &str) -> Result<()> {
    check_topic(baseline).map_err(|e| DataError::Guard(format!("`{topic}`: {e}")))?;
    let own = rewrite_topic(baseline, lane);
    if topic == baseline || topic != own {
        return Err(DataError::Guard(format!(
            "`{topic}` is not lane `{lane}`'s topic (that is `{own}`); nothing was deleted"
        )));
    }
    Ok(())
}

/// A topic's shape as lane copies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicShape {
    pub name: String,
    pub partitions: i32,
    pub replication: i16,
    /// The configs set on the topic itself (`DescribeConfigs` source `DYNAMIC_TOPIC_CONFIG`);
    /// the others are the cluster's defaults, which a new topic gets anyway.
    pub configs: Vec<(String, String)>,
}

/// What [`Kafka::create_lane_topics`] did for one baseline topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaneTopic {
    pub baseline: String,
    pub topic: String,
    pub partitions: i32,
    pub configs: Vec<(String, String)>,
    /// `false`: the lane had it already (an earlier deploy made it).
    pub created: bool,
}

/// A connection to a Kafka cluster.
pub struct Kafka {
    /// The address without a password, for messages.
    address: String,
    brokers: Vec<String>,
    /// The credentials every connection authenticates with.
    sasl: Option<Sasl>,
    client: Client,
    /// The admin connection (to the controller when metadata names one).
    admin: Conn,
}

impl std::fmt::Debug for Kafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kafka")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Kafka {
    /// Connects to the cluster of `url` (`kafka://[user:password@]h1:p1,h2:p2[?mechanism=M]`):
    /// a clear error when no broker answers within a few seconds, or when the brokers refuse
    /// the credentials.
    pub async fn connect(url: &str) -> Result<Kafka> {
        let address = redact(url);
        let KafkaUrl { brokers, sasl } = KafkaUrl::parse(url).map_err(DataError::Invalid)?;
        let unreachable = |reason: String| DataError::Unreachable {
            what: "Kafka",
            address: address.clone(),
            reason,
        };
        let refused = |reason: String| DataError::Auth {
            what: "Kafka",
            address: address.clone(),
            reason,
        };
        let mut admin = None;
        let mut reasons = Vec::new();
        for b in &brokers {
            match Conn::connect_as(b, sasl.as_ref()).await {
                Ok(c) => {
                    admin = Some(c);
                    break;
                }
                // Wrong credentials are wrong at every broker: say so now.
                Err(ConnectError::Auth(m)) => return Err(refused(m)),
                Err(ConnectError::Wire(e)) => reasons.push(format!("{b}: {e}")),
            }
        }
        let mut admin = admin.ok_or_else(|| unreachable(reasons.join("; ")))?;
        let meta = admin.metadata(Some(&[])).await.map_err(|e| {
            if sasl.is_none() {
                // A SASL listener closes the connection of a client that sends a request before
                // authenticating.
                unreachable(format!(
                    "{e} (a broker that wants SASL authentication closes the connection of a \
                     client without credentials: give them as `kafka://user:password@host:port`)"
                ))
            } else {
                unreachable(e.0)
            }
        })?;
        // Topic creation goes to the controller (KRaft brokers forward it; ZooKeeper-era brokers
        // answer NOT_CONTROLLER).
        if let Some(c) = meta.brokers.iter().find(|b| b.id == meta.controller)
            && let Ok(conn) =
                Conn::connect_as(&format!("{}:{}", c.host, c.port), sasl.as_ref()).await
        {
            admin = conn;
        }
        let backoff = BackoffConfig {
            deadline: Some(RETRY_DEADLINE),
            ..BackoffConfig::default()
        };
        let mut builder = ClientBuilder::new(brokers.clone())
            .client_id("lane")
            .backoff_config(backoff);
        if let Some(s) = &sasl {
            builder = builder.sasl_config(rskafka_sasl(s));
        }
        let client = tokio::time::timeout(RETRY_DEADLINE + Duration::from_secs(2), builder.build())
            .await
            .map_err(|_| unreachable("no answer to metadata".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Kafka {
            address,
            brokers,
            sasl,
            client,
            admin,
        })
    }

    /// The address, without a password.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The brokers (`host:port`).
    pub fn brokers(&self) -> &[String] {
        &self.brokers
    }

    /// The SASL credentials the connections authenticate with (`None`: no authentication).
    pub fn sasl(&self) -> Option<&Sasl> {
        self.sasl.as_ref()
    }

    /// An rskafka client builder for the brokers, with the credentials (for callers that need
    /// a client of their own).
    pub fn client_builder(&self) -> ClientBuilder {
        let b = ClientBuilder::new(self.brokers.clone()).client_id("lane");
        match &self.sasl {
            Some(s) => b.sasl_config(rskafka_sasl(s)),
            None => b,
        }
    }

    /// A connection of lane's own to broker `addr`, authenticated as the others are.
    pub(crate) async fn conn(&self, addr: &str) -> Result<Conn> {
        Conn::connect_as(addr, self.sasl.as_ref())
            .await
            .map_err(|e| match e {
                ConnectError::Auth(m) => DataError::Auth {
                    what: "Kafka",
                    address: self.address.clone(),
                    reason: m,
                },
                ConnectError::Wire(e) => self.server(format!("broker {addr}: {e}")),
            })
    }

    pub(crate) fn server(&self, message: impl Into<String>) -> DataError {
        DataError::Server {
            what: "Kafka",
            address: self.address.clone(),
            message: message.into(),
        }
    }

    async fn meta(&mut self, topic: &str) -> Result<Option<TopicMeta>> {
        let m = self
            .admin
            .metadata(Some(&[topic.to_owned()]))
            .await
            .map_err(|e| self.server(format!("metadata of `{topic}`: {e}")))?;
        let t = m.topics.into_iter().find(|t| t.name == topic);
        match t {
            Some(t) if t.error == 0 => Ok(Some(t)),
            Some(t) if t.error == wire::UNKNOWN_TOPIC_OR_PARTITION => Ok(None),
            None => Ok(None),
            Some(t) => Err(self.server(format!(
                "metadata of `{topic}`: {}",
                wire::error_name(t.error)
            ))),
        }
    }

    /// Whether `topic` exists.
    pub async fn topic_exists(&mut self, topic: &str) -> Result<bool> {
        check_topic(topic).map_err(DataError::Invalid)?;
        Ok(self.meta(topic).await?.is_some())
    }

    /// `topic`'s partitions, replication factor and topic-level configs; `None` when it does not
    /// exist.
    pub async fn shape(&mut self, topic: &str) -> Result<Option<TopicShape>> {
        check_topic(topic).map_err(DataError::Invalid)?;
        let Some(meta) = self.meta(topic).await? else {
            return Ok(None);
        };
        let partitions = meta.partitions.len() as i32;
        let replication = meta
            .partitions
            .iter()
            .map(|(_, r)| r.len())
            .max()
            .unwrap_or(1) as i16;
        let entries = self
            .admin
            .describe_topic_configs(topic)
            .await
            .map_err(|e| self.server(format!("configs of `{topic}`: {e}")))?
            .map_err(|(code, message)| {
                self.server(format!(
                    "configs of `{topic}`: {}{}",
                    wire::error_name(code),
                    message.map(|m| format!(" ({m})")).unwrap_or_default()
                ))
            })?;
        let mut configs = Vec::new();
        for c in entries {
            if c.source != SOURCE_TOPIC {
                continue;
            }
            match c.value {
                Some(v) => configs.push((c.name, v)),
                None => {
                    return Err(self.server(format!(
                        "`{topic}`'s config `{}` is sensitive: the broker does not send its \
                         value, so it cannot be copied",
                        c.name
                    )));
                }
            }
        }
        configs.sort();
        Ok(Some(TopicShape {
            name: topic.to_owned(),
            partitions,
            replication,
            configs,
        }))
    }

    /// Creates `topic` with `partitions`, `replication` (at least 1) and
    /// `configs`; `false` when it exists already.
    pub async fn create_topic(
        &mut self,
        topic: &str,
        partitions: i32,
        replication: i16,
        configs: &[(String, String)],
    ) -> Result<bool> {
        check_topic(topic).map_err(DataError::Invalid)?;
        if partitions < 1 || replication < 1 {
            return Err(DataError::Invalid(format!(
                "`{topic}`: {partitions} partitions and replication factor {replication}; both \
                 must be at least 1"
            )));
        }
        let new = NewTopic {
            name: topic.to_owned(),
            partitions,
            replication,
            configs: configs.to_vec(),
        };
        let answer = self
            .admin
            .create_topics(std::slice::from_ref(&new), ADMIN_TIMEOUT_MS)
            .await
            .map_err(|e| self.server(format!("creating `{topic}`: {e}")))?;
        let r = answer
            .into_iter()
            .find(|c| c.name == topic)
            .ok_or_else(|| self.server(format!("creating `{topic}`: no answer for it")))?;
        match r.error {
            0 => {
                self.wait_for(topic, true).await?;
                Ok(true)
            }
            wire::TOPIC_ALREADY_EXISTS => Ok(false),
            code => Err(self.server(format!(
                "creating `{topic}`: {}{}",
                wire::error_name(code),
                r.message.map(|m| format!(" ({m})")).unwrap_or_default()
            ))),
        }
    }

    /// Gives lane `lane` its copy of each baseline topic in `topics`: `<topic>.lane-<id>` with
    /// baseline's partition count, replication factor and topic-level configs. Topics the lane has
    /// are kept as they are. Every name is checked first and every baseline topic must exist;
    /// when a creation fails, the topics this call made are deleted again.
    pub async fn create_lane_topics(
        &mut self,
        lane: &LaneId,
        topics: &[String],
    ) -> Result<Vec<LaneTopic>> {
        let mut plan = Vec::new();
        for t in topics {
            check_topic(t).map_err(DataError::Invalid)?;
            let own = rewrite_topic(t, lane);
            check_topic(&own)
                .map_err(|e| DataError::Invalid(format!("lane `{lane}`'s topic for `{t}`: {e}")))?;
            plan.push((t.clone(), own));
        }
        let mut shapes = Vec::new();
        for (t, own) in &plan {
            let shape = self
                .shape(t)
                .await?
                .ok_or_else(|| DataError::MissingTopic {
                    topic: t.clone(),
                    address: self.address.clone(),
                })?;
            shapes.push((shape, own.clone()));
        }
        let mut done: Vec<LaneTopic> = Vec::new();
        for (shape, own) in shapes {
            let r = self
                .create_topic(&own, shape.partitions, shape.replication, &shape.configs)
                .await;
            match r {
                Ok(created) => done.push(LaneTopic {
                    baseline: shape.name,
                    topic: own,
                    partitions: shape.partitions,
                    configs: shape.configs,
                    created,
                }),
                Err(e) => {
                    for d in done.iter().filter(|d| d.created) {
                        if let Err(e2) = self.delete_lane_topic(&d.baseline, lane, &d.topic).await {
                            tracing::warn!(topic = %d.topic, error = %e2, "could not delete a lane topic again after a failed creation");
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(done)
    }

    /// Deletes lane `lane`'s topic `topic` (the copy of baseline topic `baseline`), after the
    /// guard; `false` when it did not exist.
    pub async fn delete_lane_topic(
        &mut self,
        baseline: &str,
        lane: &LaneId,
        topic: &str,
    ) -> Result<bool> {
        check_topic_delete(baseline, lane, topic)?;
        self.delete_checked(topic).await
    }

    /// Deletes `topic`, which the caller's guard has checked; `false` when it did not exist.
    pub(crate) async fn delete_checked(&mut self, topic: &str) -> Result<bool> {
        if self.meta(topic).await?.is_none() {
            return Ok(false);
        }
        let controller = self
            .client
            .controller_client()
            .map_err(|e| self.server(e.to_string()))?;
        controller
            .delete_topic(topic, ADMIN_TIMEOUT_MS)
            .await
            .map_err(|e| self.server(format!("deleting `{topic}`: {e}")))?;
        self.wait_for(topic, false).await?;
        Ok(true)
    }

    /// Waits until the broker's metadata shows `topic` (or no longer shows it): the controller
    /// answers once the change is committed, the brokers learn it a moment later.
    async fn wait_for(&mut self, topic: &str, present: bool) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ADMIN_TIMEOUT_MS as u64);
        loop {
            let m = self
                .admin
                .metadata(Some(&[topic.to_owned()]))
                .await
                .map_err(|e| self.server(format!("metadata of `{topic}`: {e}")))?;
            let shown = m
                .topics
                .iter()
                .any(|t| t.name == topic && t.error == 0 && !t.partitions.is_empty());
            if shown == present {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(self.server(format!(
                    "`{topic}` was {} but the brokers do not show it yet after {}s",
                    if present { "created" } else { "deleted" },
                    ADMIN_TIMEOUT_MS / 1000
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The end offset (the next offset to be written) of each partition of `topic`, by index.
    pub async fn end_offsets(&mut self, topic: &str) -> Result<Vec<i64>> {
        self.offsets(topic, OffsetAt::Latest).await
    }

    async fn offsets(&mut self, topic: &str, at: OffsetAt) -> Result<Vec<i64>> {
        let meta = self
            .meta(topic)
            .await?
            .ok_or_else(|| DataError::MissingTopic {
                topic: topic.to_owned(),
                address: self.address.clone(),
            })?;
        let mut parts: Vec<i32> = meta.partitions.iter().map(|(i, _)| *i).collect();
        parts.sort_unstable();
        let mut out = Vec::new();
        for p in parts {
            let pc = self.partition(topic, p).await?;
            out.push(
                pc.get_offset(at)
                    .await
                    .map_err(|e| self.server(format!("offsets of `{topic}`/{p}: {e}")))?,
            );
        }
        Ok(out)
    }

    /// The number of records `topic` holds (end offset minus start offset, summed over its
    /// partitions).
    pub async fn records(&mut self, topic: &str) -> Result<i64> {
        let start = self.offsets(topic, OffsetAt::Earliest).await?;
        let end = self.offsets(topic, OffsetAt::Latest).await?;
        Ok(end.iter().zip(&start).map(|(e, s)| e - s).sum())
    }

    pub(crate) async fn partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<rskafka::client::partition::PartitionClient> {
        self.client
            .partition_client(topic, partition, UnknownTopicHandling::Retry)
            .await
            .map_err(|e| self.server(format!("partition {partition} of `{topic}`: {e}")))
    }

    /// Appends a record (`key`, `value`) to `partition` of `topic`; returns its offset.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        value: &[u8],
    ) -> Result<i64> {
        check_topic(topic).map_err(DataError::Invalid)?;
        let pc = self.partition(topic, partition).await?;
        let record = Record {
            key: key.map(<[u8]>::to_vec),
            value: Some(value.to_vec()),
            headers: Default::default(),
            timestamp: chrono::Utc::now(),
        };
        let offsets = pc
            .produce(vec![record], Compression::NoCompression)
            .await
            .map_err(|e| self.server(format!("producing to `{topic}`/{partition}: {e}")))?;
        offsets
            .first()
            .copied()
            .ok_or_else(|| self.server(format!("producing to `{topic}`: no offset returned")))
    }

    /// Every record value of `partition` of `topic` from offset `from` up to its end offset
    /// when called, with their offsets.
    pub async fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>> {
        check_topic(topic).map_err(DataError::Invalid)?;
        let pc = self.partition(topic, partition).await?;
        let end = pc
            .get_offset(OffsetAt::Latest)
            .await
            .map_err(|e| self.server(format!("offsets of `{topic}`/{partition}: {e}")))?;
        let mut out = Vec::new();
        let mut at = from;
        while at < end {
            let (records, _) = pc
                .fetch_records(at, 1..1_000_000, 1_000)
                .await
                .map_err(|e| self.server(format!("fetching `{topic}`/{partition}: {e}")))?;
            if records.is_empty() {
                break;
            }
            for r in records {
                at = r.offset + 1;
                if r.offset < end {
                    out.push((r.offset, r.record.value.unwrap_or_default()));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_of_an_address() {
        assert_eq!(
            brokers("kafka://b1:9093,b2").unwrap(),
            ["b1:9093", "b2:9092"]
        );
        assert!(brokers("kafka://b1:x").is_err());
        assert!(brokers("kafka://:9092").is_err());
        assert!(brokers("redis://b1:9092").is_err());
        assert_eq!(
            brokers("kafka://u:p%40ss@b1:9093?mechanism=SCRAM-SHA-512").unwrap(),
            ["b1:9093"]
        );
    }

    #[test]
    fn the_guard_takes_only_the_lanes_topic() {
        let lane: LaneId = "feat-a".parse().unwrap();
        assert!(check_topic_delete("orders", &lane, "orders.lane-feat-a").is_ok());
        for bad in [
            "orders",
            "orders.lane-feat-b",
            "orders.lane-feat-a.x",
            "other.lane-feat-a",
            "__consumer_offsets",
            "",
        ] {
            assert!(
                matches!(
                    check_topic_delete("orders", &lane, bad),
                    Err(DataError::Guard(_))
                ),
                "{bad}"
            );
        }
        assert!(check_topic_delete("a b", &lane, "a b.lane-feat-a").is_err());
    }
}
