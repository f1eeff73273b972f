//! The three admin requests lane needs that `rskafka` does not offer, on Kafka's own wire format:
//! `Metadata` v4 (partition count and replication factor of a topic, and the controller),
//! `DescribeConfigs` v1 (a topic's configs with where each value comes from) and `CreateTopics` v2
//! (a topic created with configs). These are the non-flexible versions that Kafka 1.1 and every
//! later broker (4.x included) answer. A request is a frame `size:i32` + header v1 (`api_key:i16`,
//! `api_version:i16`, `correlation_id:i32`, `client_id:string`) + body; the answer is `size:i32` +
//! `correlation_id:i32` + body (Kafka's protocol guide).
//!
//! A connection to a broker that wants SASL authenticates first ([`Conn::connect_as`]):
//! `SaslHandshake` v1 names the mechanism, then `SaslAuthenticate` v0 frames carry the
//! mechanism's messages (one for PLAIN; client-first/server-first/client-final/server-final for
//! SCRAM), which [`rsasl`] (the SASL library rskafka itself authenticates with) computes.

pub mod groups;

use std::time::Duration;

pub use lane_core::kafka_url::{Mechanism, Sasl};
use rsasl::prelude::{Mechname, SASLClient, SASLConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// What one request may take, connect included.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer accepted (a metadata answer of a big cluster fits).
const MAX_FRAME: usize = 64 << 20;
const CLIENT_ID: &str = "lane";

const METADATA: i16 = 3;
const CREATE_TOPICS: i16 = 19;
const DESCRIBE_CONFIGS: i16 = 32;
const SASL_HANDSHAKE: i16 = 17;
const SASL_AUTHENTICATE: i16 = 36;
/// `DescribeConfigs` resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;

/// Kafka error codes lane tells apart.
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const NOT_CONTROLLER: i16 = 41;
pub const ILLEGAL_SASL_STATE: i16 = 34;

/// A broker as metadata names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

/// A topic as metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    /// 0 when the topic exists; 3 (`UNKNOWN_TOPIC_OR_PARTITION`) when it does not.
    pub error: i16,
    pub internal: bool,
    /// Per partition (by index): its replicas.
    pub partitions: Vec<(i32, Vec<i32>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub brokers: Vec<Broker>,
    pub controller: i32,
    pub topics: Vec<TopicMeta>,
}

/// One config entry of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    /// `None` for a sensitive value (the broker does not send it).
    pub value: Option<String>,
    /// 1 `DYNAMIC_TOPIC_CONFIG` (set on the topic), 4 `STATIC_BROKER_CONFIG`, 5 `DEFAULT_CONFIG`, …
    pub source: i8,
    pub sensitive: bool,
}

/// `DescribeConfigs`' source of a value set on the topic itself.
pub const SOURCE_TOPIC: i8 = 1;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    /// At least 1 (`CreateTopics` v2 takes no -1 for the cluster's default).
    pub replication: i16,
    pub configs: Vec<(String, String)>,
}

/// What the broker said about one topic of a `CreateTopics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub name: String,
    pub error: i16,
    pub message: Option<String>,
}

/// A wire-level failure: the connection, a malformed answer.
#[derive(Debug)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, WireError>;

/// Why [`Conn::connect_as`] has no connection.
#[derive(Debug)]
pub enum ConnectError {
    /// The broker does not answer, or the connection broke.
    Wire(WireError),
    /// The broker refused the mechanism or the credentials (the message names the broker, the
    /// user and the mechanism, never the password).
    Auth(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Wire(e) => e.fmt(f),
            ConnectError::Auth(m) => f.write_str(m),
        }
    }
}

impl From<WireError> for ConnectError {
    fn from(e: WireError) -> Self {
        ConnectError::Wire(e)
    }
}

fn err<T>(m: impl Into<String>) -> Result<T> {
    Err(WireError(m.into()))
}

/// One connection to one broker.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    correlation: i32,
}

impl Conn {
    /// Connects to `addr` (`host:port`).
    pub async fn connect(addr: &str) -> Result<Conn> {
        match tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(Conn {
                    stream,
                    correlation: 0,
                })
            }
            Ok(Err(e)) => err(e.to_string()),
            Err(_) => err(format!("no answer in {}s", TIMEOUT.as_secs())),
        }
    }

    /// Connects to `addr` (`host:port`) and, given credentials, authenticates with them.
    pub async fn connect_as(
        addr: &str,
        sasl: Option<&Sasl>,
    ) -> std::result::Result<Conn, ConnectError> {
        let mut c = Conn::connect(addr).await?;
        if let Some(sasl) = sasl {
            c.authenticate(addr, sasl).await?;
        }
        Ok(c)
    }

    /// SASL authentication of this connection (to broker `addr`, for messages) as `sasl.user`.
    async fn authenticate(
        &mut self,
        addr: &str,
        sasl: &Sasl,
    ) -> std::result::Result<(), ConnectError> {
        let mech = sasl.mechanism.name();
        let who = format!("`{}` with {mech} at broker {addr}", sasl.user);
        let refused =
            |m: String| ConnectError::Auth(format!("authentication as {who} failed: {m}"));
        let mut e = Enc::default();
        e.string(mech);
        let buf = self
            .call(SASL_HANDSHAKE, 1, &e.0)
            .await
            .map_err(|e| WireError(format!("SASL handshake with {addr}: {e}")))?;
        let mut d = Dec::new(&buf);
        let code = d.i16()?;
        let offered = d.array(Dec::string)?;
        if code == ILLEGAL_SASL_STATE && offered.is_empty() {
            return Err(refused(
                "this listener of the broker takes no SASL (ILLEGAL_SASL_STATE): leave the \
                 credentials out of the address, or name the broker's SASL listener"
                    .into(),
            ));
        }
        if code != 0 {
            return Err(refused(format!(
                "the broker does not take SASL mechanism {mech} ({}; it takes {})",
                error_name(code),
                if offered.is_empty() {
                    "none".to_owned()
                } else {
                    offered.join(", ")
                }
            )));
        }
        let config = SASLConfig::with_credentials(None, sasl.user.clone(), sasl.password.clone())
            .map_err(|e| refused(e.to_string()))?;
        let name = Mechname::parse(mech.as_bytes()).map_err(|e| refused(e.to_string()))?;
        let mut session = SASLClient::new(config)
            .start_suggested(&[name])
            .map_err(|e| refused(e.to_string()))?;
        let mut input: Option<Vec<u8>> = None;
        loop {
            let mut out = Vec::new();
            let state = session
                .step(input.as_deref(), &mut out)
                .map_err(|e| refused(e.to_string()))?;
            if state.has_sent_message() {
                let mut e = Enc::default();
                e.bytes(&out);
                let buf = self
                    .call(SASL_AUTHENTICATE, 0, &e.0)
                    .await
                    .map_err(|e| refused(format!("the broker closed the exchange ({e})")))?;
                let mut d = Dec::new(&buf);
                let code = d.i16()?;
                let message = d.nullable_string()?;
                let answer = d.bytes()?;
                if code != 0 {
                    return Err(refused(format!(
                        "{}{}",
                        error_name(code),
                        message.map(|m| format!(" ({m})")).unwrap_or_default()
                    )));
                }
                input = Some(answer);
            }
            if state.is_finished() {
                return Ok(());
            }
        }
    }

    /// Sends one request (`api_key`, `version`, `body`: what follows the request header) and
    /// returns the answer after its correlation id (the building block of the requests here; tests
    /// use it for requests lane itself never sends, such as a consumer's `JoinGroup`).
    pub async fn call(&mut self, api_key: i16, version: i16, body: &[u8]) -> Result<Vec<u8>> {
        self.correlation = self.correlation.wrapping_add(1);
        let mut frame = Enc::default();
        frame.i16(api_key);
        frame.i16(version);
        frame.i32(self.correlation);
        frame.string(CLIENT_ID);
        frame.0.extend_from_slice(body);
        let mut out = Vec::with_capacity(frame.0.len() + 4);
        out.extend_from_slice(&(frame.0.len() as i32).to_be_bytes());
        out.extend_from_slice(&frame.0);
        let io = async {
            self.stream.write_all(&out).await?;
            let size = self.stream.read_i32().await?;
            if size < 4 || size as usize > MAX_FRAME {
                return Err(std::io::Error::other(format!("an answer of {size} bytes")));
            }
            let mut buf = vec![0; size as usize];
            self.stream.read_exact(&mut buf).await?;
            Ok(buf)
        };
        let buf = match tokio::time::timeout(TIMEOUT, io).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return err(e.to_string()),
            Err(_) => return err(format!("no answer in {}s", TIMEOUT.as_secs())),
        };
        let mut d = Dec::new(&buf);
        let correlation = d.i32()?;
        if correlation != self.correlation {
            return err(format!(
                "the broker answered request {correlation}, not {}",
                self.correlation
            ));
        }
        Ok(buf[4..].to_vec())
    }

    /// `Metadata` v4 for `topics` (`None`: every topic).
    pub async fn metadata(&mut self, topics: Option<&[String]>) -> Result<Metadata> {
        let mut e = Enc::default();
        match topics {
            None => e.i32(-1),
            Some(t) => {
                e.i32(t.len() as i32);
                for name in t {
                    e.string(name);
                }
            }
        }
        e.bool(false); // allow_auto_topic_creation
        let buf = self.call(METADATA, 4, &e.0).await?;
        let mut d = Dec::new(&buf);
        d.i32()?; // throttle_time_ms
        let brokers = d.array(|d| {
            let id = d.i32()?;
            let host = d.string()?;
            let port = d.i32()?;
            d.nullable_string()?; // rack
            Ok(Broker { id, host, port })
        })?;
        d.nullable_string()?; // cluster_id
        let controller = d.i32()?;
        let topics = d.array(|d| {
            let error = d.i16()?;
            let name = d.string()?;
            let internal = d.bool()?;
            let partitions = d.array(|d| {
                d.i16()?; // error_code
                let index = d.i32()?;
                d.i32()?; // leader
                let replicas = d.array(Dec::i32)?;
                d.array(Dec::i32)?; // isr
                Ok((index, replicas))
            })?;
            Ok(TopicMeta {
                name,
                error,
                internal,
                partitions,
            })
        })?;
        Ok(Metadata {
            brokers,
            controller,
            topics,
        })
    }

    /// `DescribeConfigs` v1 of one topic: its error (code, message) or its entries.
    pub async fn describe_topic_configs(
        &mut self,
        topic: &str,
    ) -> Result<std::result::Result<Vec<ConfigEntry>, (i16, Option<String>)>> {
        let mut e = Enc::default();
        e.i32(1);
        e.i8(RESOURCE_TOPIC);
        e.string(topic);
        e.i32(-1); // every config
        e.bool(false); // include_synonyms
        let buf = self.call(DESCRIBE_CONFIGS, 1, &e.0).await?;
        let mut d = Dec::new(&buf);
        d.i32()?; // throttle_time_ms
        let mut results = d.array(|d| {
            let error = d.i16()?;
            let message = d.nullable_string()?;
            d.i8()?; // resource_type
            let name = d.string()?;
            let configs = d.array(|d| {
                let name = d.string()?;
                let value = d.nullable_string()?;
                d.bool()?; // read_only
                let source = d.i8()?;
                let sensitive = d.bool()?;
                d.array(|d| {
                    d.string()?;
                    d.nullable_string()?;
                    d.i8()
                })?;
                Ok(ConfigEntry {
                    name,
                    value,
                    source,
                    sensitive,
                })
            })?;
            Ok((error, message, name, configs))
        })?;
        if results.len() != 1 || results[0].2 != topic {
            return err(format!(
                "DescribeConfigs answered for {} resources, not for `{topic}`",
                results.len()
            ));
        }
        let (error, message, _, configs) = results.remove(0);
        Ok(if error == 0 {
            Ok(configs)
        } else {
            Err((error, message))
        })
    }

    /// `CreateTopics` v2 of `topics`, waiting up to `timeout_ms` for them to be created.
    pub async fn create_topics(
        &mut self,
        topics: &[NewTopic],
        timeout_ms: i32,
    ) -> Result<Vec<Created>> {
        let mut e = Enc::default();
        e.i32(topics.len() as i32);
        for t in topics {
            e.string(&t.name);
            e.i32(t.partitions);
            e.i16(t.replication);
            e.i32(0); // assignments: none, the controller places the replicas
            e.i32(t.configs.len() as i32);
            for (k, v) in &t.configs {
                e.string(k);
                e.string(v);
            }
        }
        e.i32(timeout_ms);
        e.bool(false); // validate_only
        let buf = self.call(CREATE_TOPICS, 2, &e.0).await?;
        let mut d = Dec::new(&buf);
        d.i32()?; // throttle_time_ms
        d.array(|d| {
            let name = d.string()?;
            let error = d.i16()?;
            let message = d.nullable_string()?;
            Ok(Created {
                name,
                error,
                message,
            })
        })
    }
}

/// Kafka's name for an error code (the ones an admin meets; the number otherwise).
pub fn error_name(code: i16) -> String {
    match code {
        3 => "UNKNOWN_TOPIC_OR_PARTITION".into(),
        7 => "REQUEST_TIMED_OUT".into(),
        17 => "INVALID_TOPIC_EXCEPTION".into(),
        22 => "ILLEGAL_GENERATION".into(),
        25 => "UNKNOWN_MEMBER_ID".into(),
        27 => "REBALANCE_IN_PROGRESS".into(),
        29 => "TOPIC_AUTHORIZATION_FAILED".into(),
        36 => "TOPIC_ALREADY_EXISTS".into(),
        37 => "INVALID_PARTITIONS".into(),
        38 => "INVALID_REPLICATION_FACTOR".into(),
        40 => "INVALID_CONFIG".into(),
        41 => "NOT_CONTROLLER".into(),
        42 => "INVALID_REQUEST".into(),
        35 => "UNSUPPORTED_VERSION".into(),
        33 => "UNSUPPORTED_SASL_MECHANISM".into(),
        34 => "ILLEGAL_SASL_STATE".into(),
        58 => "SASL_AUTHENTICATION_FAILED".into(),
        c => format!("error {c}"),
    }
}

#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn i8(&mut self, v: i8) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i16(&mut self, v: i16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    /// Names and values lane sends are short (topic names: at most 249 bytes).
    fn string(&mut self, s: &str) {
        self.i16(s.len() as i16);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.i32(b.len() as i32);
        self.0.extend_from_slice(b);
    }
}

struct Dec<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Dec<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Dec { buf, at: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() - self.at < n {
            return err("the broker's answer ends early");
        }
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn i8(&mut self) -> Result<i8> {
        Ok(self.take(1)?[0] as i8)
    }
    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn bool(&mut self) -> Result<bool> {
        Ok(self.take(1)?[0] != 0)
    }
    fn nullable_string(&mut self) -> Result<Option<String>> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        let b = self.take(n as usize)?;
        String::from_utf8(b.to_vec())
            .map(Some)
            .or_else(|_| err("a string in the broker's answer is not UTF-8"))
    }
    fn string(&mut self) -> Result<String> {
        self.nullable_string()?
            .map_or_else(|| err("a null where the broker must send a string"), Ok)
    }
    fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(Vec::new());
        }
        Ok(self.take(n as usize)?.to_vec())
    }
    fn array<T>(&mut self, mut item: impl FnMut(&mut Self) -> Result<T>) -> Result<Vec<T>> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(Vec::new());
        }
        // Each item is at least one byte: a count past the answer's end is malformed.
        if n as usize > self.buf.len() - self.at {
            return err("an array in the broker's answer is longer than the answer");
        }
        (0..n).map(|_| item(self)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_arrays_and_short_answers() {
        let mut e = Enc::default();
        e.i32(2);
        e.string("a.b");
        e.i16(-1);
        let mut d = Dec::new(&e.0);
        assert_eq!(
            d.array(Dec::nullable_string).unwrap(),
            [Some("a.b".to_owned()), None]
        );
        let mut short = Dec::new(&[0, 0, 0, 9, 0]);
        assert!(short.array(Dec::i8).is_err(), "a count past the end");
        let mut cut = Dec::new(&[0, 5, b'a']);
        assert!(cut.string().is_err());
    }
}
