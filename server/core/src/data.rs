//! Data bindings (`[data.<name>]` in `lane.toml`) and the pure rewriting of a baseline address
//! into a lane's own address. No I/O: provisioning (creating schemas, allocating Redis databases)
//! lives in `lane-data`; what a lane was given is recorded in its document as
//! [`DataBinding`](crate::lane::DataBinding)s, and [`lane_env`] turns bindings plus records into
//! the environment a lane's process starts with.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::id::LaneId;
use crate::lane::{DataBinding, DataKind};
use crate::naming;

/// MySQL's longest identifier (database, table, column names), in characters.
pub const MYSQL_MAX_IDENT: usize = 64;

/// A binding's name: a lowercase identifier, `[a-z][a-z0-9_]*`, at most 32 characters. It is used
/// in state files and as part of names other systems see, so it never contains quotes, dots,
/// dashes, spaces or other SQL metacharacters.
pub fn check_binding_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a binding name (a lowercase letter, then lowercase letters, digits \
             and `_`; at most 32)"
        ))
    }
}

/// A MySQL database or table name lane accepts: `[A-Za-z0-9_]`, not all digits, at most 64. The
/// names are still quoted wherever they appear in SQL; this keeps quotes, backticks, dots,
/// semicolons, spaces and comment markers out entirely.
pub fn check_mysql_ident(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.chars().count() <= MYSQL_MAX_IDENT
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a database name lane accepts (letters, digits and `_`, not only \
             digits, at most {MYSQL_MAX_IDENT})"
        ))
    }
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn check_env_name(name: &str) -> Result<(), String> {
    let ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not an environment variable name (letters, digits and `_`, not starting \
             with a digit)"
        ))
    }
}

/// A Kafka topic name: `[A-Za-z0-9._-]`, at most 249 characters, not `.` or `..`.
pub fn check_topic(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a Kafka topic name (letters, digits, `.`, `_` and `-`, at most 249)"
        ))
    }
}

/// An address split into its parts: `scheme://[userinfo@]host[:port][/path][?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub scheme: String,
    /// `user[:password]`, without the `@`.
    pub userinfo: Option<String>,
    /// `host[:port]` (a list `h1:p1,h2:p2` for Kafka brokers).
    pub authority: String,
    /// Without the leading `/`; empty when absent.
    pub path: String,
    /// Without the `?`.
    pub query: Option<String>,
}

impl Address {
    pub fn parse(s: &str) -> Result<Address, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("`{}` is not an address like `scheme://host/...`", redact(s)))?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+')
        {
            return Err(format!("`{}` has no valid scheme", redact(s)));
        }
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q.to_owned())),
            None => (rest, None),
        };
        let (auth, path) = match rest.split_once('/') {
            Some((a, p)) => (a, p.to_owned()),
            None => (rest, String::new()),
        };
        let (userinfo, authority) = match auth.rsplit_once('@') {
            Some((u, a)) => (Some(u.to_owned()), a.to_owned()),
            None => (None, auth.to_owned()),
        };
        if authority.is_empty() {
            return Err(format!("`{}` names no host", redact(s)));
        }
        Ok(Address {
            scheme: scheme.to_owned(),
            userinfo,
            authority,
            path,
            query,
        })
    }

    /// The same address with another path.
    pub fn with_path(&self, path: &str) -> Address {
        Address {
            path: path.to_owned(),
            ..self.clone()
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme)?;
        if let Some(u) = &self.userinfo {
            write!(f, "{u}@")?;
        }
        f.write_str(&self.authority)?;
        if !self.path.is_empty() {
            write!(f, "/{}", self.path)?;
        }
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

/// The address with any password replaced by `***`, for messages and logs.
pub fn redact(address: &str) -> String {
    let Some((scheme, rest)) = address.split_once("://") else {
        return address.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{}", &rest[end..]),
            None => address.to_owned(),
        },
        None => address.to_owned(),
    }
}

/// How a lane isolates a Redis binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum RedisMode {
    /// A database index of its own from `first..=last` (the baseline's index is never in it).
    Database { first: u32, last: u32 },
    /// One database shared with baseline; the lane's keys start with `lane:<id>:`, given to the
    /// process in `prefix_env`.
    Prefix { prefix_env: String },
}

/// What a MySQL binding copies besides the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// At most this many rows per table.
    pub rows: u64,
    /// At most this many bytes of row data in total, over all tables.
    pub bytes: u64,
}

/// Which baseline keys a Redis binding copies into a lane's database when the lane first gets one
/// (`copy = { patterns = ["session:*"], keys = 1000, bytes = "10MiB" }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisCopy {
    /// Glob patterns as Redis's `SCAN ... MATCH` takes them; a key matching any is copied.
    pub patterns: Vec<String>,
    /// At most this many keys in total.
    pub keys: u64,
    /// At most this many bytes in total: each key's name plus its `DUMP` serialization.
    pub bytes: u64,
}

/// The kind-specific part of a binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataOptions {
    /// The address's path is the baseline database.
    Mysql {
        database: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sample: Option<Sample>,
    },
    /// The address's path is the baseline database index (0 when absent).
    Redis {
        index: u32,
        mode: RedisMode,
        /// Baseline keys copied into the lane's database when the lane first gets it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        copy: Option<RedisCopy>,
    },
    /// Topics: environment variable → baseline topic; consumer groups: variable → group.
    Kafka {
        topics: BTreeMap<String, String>,
        groups: BTreeMap<String, String>,
    },
    /// Apollo's Open API address (the portal) is `address`; the lane's cluster name goes in
    /// `cluster_env`. See [`ApolloOptions`].
    Apollo(ApolloOptions),
}

/// The Apollo environment a binding uses when `apollo_env` is not given.
pub const DEFAULT_APOLLO_ENV: &str = "DEV";
/// The namespace a binding writes when `namespace` is not given.
pub const DEFAULT_APOLLO_NAMESPACE: &str = "application";
/// The Portal user lane acts as when `operator` is not given (Apollo's default admin).
pub const DEFAULT_APOLLO_OPERATOR: &str = "apollo";
/// The variable holding the Open API token when `token_env` is not given.
pub const DEFAULT_APOLLO_TOKEN_ENV: &str = "APOLLO_OPENAPI_TOKEN";
/// Apollo's longest item key.
pub const APOLLO_MAX_KEY: usize = 128;

/// An Apollo binding: the lane gets cluster `lane-<id>` of `app` in `env`, holding in `namespace`
/// the items `items` (Apollo key → a variable another binding sets, whose lane value the key
/// gets), published.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApolloOptions {
    pub app: String,
    pub cluster_env: String,
    /// The Apollo environment (`DEV`, `FAT`, …): `apollo_env` in lane.toml.
    pub env: String,
    pub namespace: String,
    /// The Portal user recorded as the author of the cluster, items and release.
    pub operator: String,
    /// The environment variable the Open API token is read from.
    pub token_env: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub items: BTreeMap<String, String>,
    /// The token, read from `token_env` by the `lane` command that loaded the manifest (never
    /// from lane.toml), so the process that provisions and tears down the lane has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Debug without the token (it may reach logs).
impl fmt::Debug for ApolloOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApolloOptions")
            .field("app", &self.app)
            .field("cluster_env", &self.cluster_env)
            .field("env", &self.env)
            .field("namespace", &self.namespace)
            .field("operator", &self.operator)
            .field("token_env", &self.token_env)
            .field("items", &self.items)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// An Apollo item key lane accepts: 1 to 128 characters, no whitespace or control characters.
pub fn check_apollo_key(key: &str) -> Result<(), String> {
    if key.is_empty()
        || key.chars().count() > APOLLO_MAX_KEY
        || key.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "`{key}` is not an Apollo item key (1 to {APOLLO_MAX_KEY} characters, no spaces)"
        ));
    }
    Ok(())
}

/// Fills in the Open API token of every Apollo binding from the variable its `token_env` names,
/// looked up with `lookup` (the process environment in the `lane` command).
pub fn resolve_tokens(specs: &mut [DataSpec], lookup: impl Fn(&str) -> Option<String>) {
    for s in specs {
        if let DataOptions::Apollo(a) = &mut s.options
            && a.token.is_none()
        {
            a.token = lookup(&a.token_env).filter(|t| !t.trim().is_empty());
        }
    }
}

/// The items lane writes into the lane's Apollo cluster for binding `apollo`: each key gets the
/// value the lane's process gets for the variable it names ([`lane_env`] of the other bindings,
/// so exactly the same rewriting).
pub fn apollo_items(
    apollo: &DataSpec,
    specs: &[DataSpec],
    lane: &LaneId,
    records: &[DataBinding],
) -> Result<Vec<(String, String)>, RewriteError> {
    let DataOptions::Apollo(a) = &apollo.options else {
        return Ok(Vec::new());
    };
    let others: Vec<DataSpec> = specs
        .iter()
        .filter(|s| s.kind() != DataKind::Apollo)
        .cloned()
        .collect();
    let env = lane_env(&others, Some(lane), records)?;
    a.items
        .iter()
        .map(|(key, var)| {
            env.iter()
                .find(|(k, _)| k == var)
                .map(|(_, v)| (key.clone(), v.clone()))
                .ok_or_else(|| RewriteError::Invalid {
                    binding: apollo.name.clone(),
                    message: format!(
                        "item `{key}` names `{var}`, which no other binding of this lane.toml sets"
                    ),
                })
        })
        .collect()
}

/// A validated `[data.<name>]` binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSpec {
    pub name: String,
    /// The baseline's address (`mysql://user:pw@host:3306/orders`, `redis://host:6379/1`,
    /// `kafka://b1:9092,b2:9092`, `http://apollo-portal:8070`).
    pub address: String,
    /// The environment variable the service reads the address from.
    pub env: String,
    pub options: DataOptions,
}

impl DataSpec {
    pub fn kind(&self) -> DataKind {
        match self.options {
            DataOptions::Mysql { .. } => DataKind::Mysql,
            DataOptions::Redis { .. } => DataKind::Redis,
            DataOptions::Kafka { .. } => DataKind::Kafka,
            DataOptions::Apollo { .. } => DataKind::Apollo,
        }
    }
}

/// Errors of rewriting, each saying what is wrong with which binding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error(
        "data binding `{binding}`: the lane database name `{name}` is {len} characters; MySQL \
         allows {MYSQL_MAX_IDENT} (use a shorter lane id or database name)"
    )]
    NameTooLong {
        binding: String,
        name: String,
        len: usize,
    },
    #[error(
        "data binding `{binding}` (redis): lane `{lane}` has no database index yet; it is \
         allocated when the lane's data is provisioned"
    )]
    NotProvisioned { binding: String, lane: LaneId },
    #[error("data binding `{binding}`: {message}")]
    Invalid { binding: String, message: String },
}

/// The lane's MySQL database for baseline database `db`: `<db>__lane_<id>`, checked against
/// MySQL's identifier length.
pub fn mysql_database(binding: &str, db: &str, lane: &LaneId) -> Result<String, RewriteError> {
    let name = naming::mysql_schema(db, lane);
    let len = name.chars().count();
    if len > MYSQL_MAX_IDENT {
        return Err(RewriteError::NameTooLong {
            binding: binding.to_owned(),
            name,
            len,
        });
    }
    Ok(name)
}

/// `mysql://h/orders` → `mysql://h/orders__lane_<id>`; user, password, port and query kept.
pub fn rewrite_mysql(binding: &str, baseline: &str, lane: &LaneId) -> Result<String, RewriteError> {
    let invalid = |message: String| RewriteError::Invalid {
        binding: binding.to_owned(),
        message,
    };
    let addr = Address::parse(baseline).map_err(invalid)?;
    check_mysql_ident(&addr.path).map_err(invalid)?;
    let db = mysql_database(binding, &addr.path, lane)?;
    Ok(addr.with_path(&db).to_string())
}

/// `redis://10.0.0.1/1` → `redis://10.0.0.1/<index>`.
pub fn rewrite_redis(binding: &str, baseline: &str, index: u32) -> Result<String, RewriteError> {
    let addr = Address::parse(baseline).map_err(|message| RewriteError::Invalid {
        binding: binding.to_owned(),
        message,
    })?;
    Ok(addr.with_path(&index.to_string()).to_string())
}

/// The key prefix of a lane in prefix mode: `lane:<id>:`.
pub fn redis_prefix(lane: &LaneId) -> String {
    format!("lane:{lane}:")
}

/// A topic's lane name: `<topic>.lane-<id>`.
pub fn rewrite_topic(topic: &str, lane: &LaneId) -> String {
    naming::kafka_topic(topic, lane)
}

/// A consumer group's lane name: `<group>.lane-<id>` (a lane's consumers never join baseline's
/// groups, so they never take baseline's partitions).
pub fn rewrite_group(group: &str, lane: &LaneId) -> String {
    format!("{group}.lane-{lane}")
}

/// The Apollo cluster of a lane: `lane-<id>`.
pub fn apollo_cluster(lane: &LaneId) -> String {
    format!("lane-{lane}")
}

/// The record a lane keeps for a binding once provisioned (`target` is the lane's own name: the
/// database, the Redis index, the cluster).
pub fn record(spec: &DataSpec, target: String) -> DataBinding {
    DataBinding {
        kind: spec.kind(),
        name: spec.name.clone(),
        target,
    }
}

/// The environment a process of `lane` (or of baseline, `None`) starts with for `specs`:
/// baseline gets the addresses as written; a lane gets its own, from `records` (what the lane
/// was given) where the name is not derived from the lane id alone. Every backend injects exactly
/// this.
pub fn lane_env(
    specs: &[DataSpec],
    lane: Option<&LaneId>,
    records: &[DataBinding],
) -> Result<Vec<(String, String)>, RewriteError> {
    let mut env = Vec::new();
    for spec in specs {
        let Some(lane) = lane else {
            env.push((spec.env.clone(), spec.address.clone()));
            match &spec.options {
                DataOptions::Kafka { topics, groups } => {
                    env.extend(topics.iter().map(|(k, v)| (k.clone(), v.clone())));
                    env.extend(groups.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                DataOptions::Apollo(a) => {
                    env.push((a.cluster_env.clone(), "default".into()));
                }
                DataOptions::Redis {
                    mode: RedisMode::Prefix { prefix_env },
                    ..
                } => env.push((prefix_env.clone(), String::new())),
                _ => {}
            }
            continue;
        };
        let recorded = records
            .iter()
            .find(|r| r.name == spec.name && r.kind == spec.kind());
        match &spec.options {
            DataOptions::Mysql { .. } => {
                env.push((
                    spec.env.clone(),
                    rewrite_mysql(&spec.name, &spec.address, lane)?,
                ));
            }
            DataOptions::Redis { mode, .. } => match mode {
                RedisMode::Database { .. } => {
                    let index = recorded
                        .and_then(|r| r.target.parse::<u32>().ok())
                        .ok_or_else(|| RewriteError::NotProvisioned {
                            binding: spec.name.clone(),
                            lane: lane.clone(),
                        })?;
                    env.push((
                        spec.env.clone(),
                        rewrite_redis(&spec.name, &spec.address, index)?,
                    ));
                }
                RedisMode::Prefix { prefix_env } => {
                    env.push((spec.env.clone(), spec.address.clone()));
                    env.push((prefix_env.clone(), redis_prefix(lane)));
                }
            },
            DataOptions::Kafka { topics, groups } => {
                env.push((spec.env.clone(), spec.address.clone()));
                env.extend(
                    topics
                        .iter()
                        .map(|(k, v)| (k.clone(), rewrite_topic(v, lane))),
                );
                env.extend(
                    groups
                        .iter()
                        .map(|(k, v)| (k.clone(), rewrite_group(v, lane))),
                );
            }
            DataOptions::Apollo(a) => {
                env.push((spec.env.clone(), spec.address.clone()));
                env.push((a.cluster_env.clone(), apollo_cluster(lane)));
            }
        }
    }
    Ok(env)
}

/// Parses a byte size: an integer, or one with a unit `B`, `KiB`, `MiB`, `GiB`, `kB`, `MB`, `GB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. `512KiB`, `4MiB`, `1000000`)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "`{other}` is not a size unit (B, KiB, MiB, GiB, kB, MB, GB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(s: &str) -> LaneId {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_round_trip() {
        for a in [
            "mysql://root:pw@10.0.0.1:3306/orders?ssl-mode=disabled",
            "redis://10.0.0.1/1",
            "redis://:secret@h:6379",
            "kafka://b1:9092,b2:9092",
        ] {
            assert_eq!(Address::parse(a).unwrap().to_string(), a);
        }
        assert!(Address::parse("10.0.0.1:3306").is_err());
        assert!(Address::parse("mysql:///orders").is_err());
    }

    #[test]
    fn rewriting() {
        let l = lane("feat-1");
        assert_eq!(
            rewrite_mysql("orders", "mysql://h/orders", &l).unwrap(),
            "mysql://h/orders__lane_feat_1"
        );
        assert_eq!(
            rewrite_mysql("o", "mysql://u:p@h:3306/orders?x=1", &l).unwrap(),
            "mysql://u:p@h:3306/orders__lane_feat_1?x=1"
        );
        assert_eq!(
            rewrite_redis("c", "redis://10.0.0.1/1", 7).unwrap(),
            "redis://10.0.0.1/7"
        );
        assert_eq!(
            rewrite_redis("c", "redis://10.0.0.1", 3).unwrap(),
            "redis://10.0.0.1/3"
        );
        assert_eq!(
            rewrite_topic("orders.created", &l),
            "orders.created.lane-feat-1"
        );
        assert_eq!(rewrite_group("cart", &l), "cart.lane-feat-1");
        assert_eq!(apollo_cluster(&l), "lane-feat-1");
        assert_eq!(redis_prefix(&l), "lane:feat-1:");
    }

    #[test]
    fn rewriting_rejects_what_mysql_cannot_name() {
        let long = lane(&"x".repeat(40));
        let err = rewrite_mysql("o", "mysql://h/orders_and_more_things", &long).unwrap_err();
        assert!(
            matches!(err, RewriteError::NameTooLong { len: 69, .. }),
            "{err}"
        );
        let err = rewrite_mysql("o", "mysql://h/ord`ers", &lane("a")).unwrap_err();
        assert!(err.to_string().contains("is not a database name"), "{err}");
        let err = rewrite_mysql("o", "mysql://h/", &lane("a")).unwrap_err();
        assert!(err.to_string().contains("is not a database name"), "{err}");
    }

    #[test]
    fn names_with_metacharacters_are_rejected() {
        for bad in [
            "orders;drop",
            "a`b",
            "a'b",
            "a\"b",
            "a b",
            "a.b",
            "a-b",
            "a/*",
            "a--",
            "ä",
            "",
            "123",
        ] {
            assert!(check_mysql_ident(bad).is_err(), "{bad:?}");
        }
        for good in ["orders", "Orders_2", "_x", "a1"] {
            assert!(check_mysql_ident(good).is_ok(), "{good:?}");
        }
        for bad in ["Orders", "1a", "a-b", "a;b", "a`", "", &"a".repeat(33)] {
            assert!(check_binding_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_binding_name("orders_db2").is_ok());
        assert!(check_env_name("ORDERS_DSN").is_ok());
        assert!(check_env_name("1X").is_err());
        assert!(check_env_name("A-B").is_err());
        assert!(check_topic("orders.created").is_ok());
        assert!(check_topic("a b").is_err());
        assert!(check_topic("..").is_err());
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("mysql://u:pw@h:1/db"), "mysql://u:***@h:1/db");
        assert_eq!(redact("mysql://u@h/db"), "mysql://u@h/db");
        assert_eq!(redact("redis://h/1"), "redis://h/1");
    }

    #[test]
    fn apollo_items_are_the_lanes_rewritten_addresses() {
        let mysql = DataSpec {
            name: "orders".into(),
            address: "mysql://u:p@h/orders".into(),
            env: "ORDERS_DSN".into(),
            options: DataOptions::Mysql {
                database: "orders".into(),
                sample: None,
            },
        };
        let redis = DataSpec {
            name: "cache".into(),
            address: "redis://h:6379/1".into(),
            env: "REDIS_URL".into(),
            options: DataOptions::Redis {
                index: 1,
                mode: RedisMode::Database { first: 2, last: 9 },
                copy: None,
            },
        };
        let apollo = DataSpec {
            name: "config".into(),
            address: "http://portal:8070".into(),
            env: "APOLLO_META".into(),
            options: DataOptions::Apollo(ApolloOptions {
                app: "cart".into(),
                cluster_env: "APOLLO_CLUSTER".into(),
                env: "DEV".into(),
                namespace: "application".into(),
                operator: "apollo".into(),
                token_env: "T".into(),
                items: BTreeMap::from([
                    ("db.url".into(), "ORDERS_DSN".into()),
                    ("redis.url".into(), "REDIS_URL".into()),
                ]),
                token: None,
            }),
        };
        let specs = vec![mysql, redis.clone(), apollo.clone()];
        let l = lane("feat-a");
        let err = apollo_items(&apollo, &specs, &l, &[]).unwrap_err();
        assert!(matches!(err, RewriteError::NotProvisioned { .. }), "{err}");
        let items = apollo_items(&apollo, &specs, &l, &[record(&redis, "4".into())]).unwrap();
        assert_eq!(
            items,
            [
                ("db.url", "mysql://u:p@h/orders__lane_feat_a"),
                ("redis.url", "redis://h:6379/4"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        let mut specs = specs;
        resolve_tokens(&mut specs, |v| (v == "T").then(|| "secret".to_owned()));
        let DataOptions::Apollo(a) = &specs[2].options else {
            unreachable!()
        };
        assert_eq!(a.token.as_deref(), Some("secret"));
        assert!(
            !format!("{specs:?}").contains("secret"),
            "the token stays out of Debug"
        );
        assert!(check_apollo_key("a.b-c_d").is_ok());
        assert!(check_apollo_key("").is_err());
        assert!(check_apollo_key(&"k".repeat(129)).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("4MiB").unwrap(), 4 << 20);
        assert_eq!(parse_size("2 kB").unwrap(), 2000);
        assert!(parse_size("4 parsecs").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    #[test]
    fn env_for_baseline_and_lane() {
        let specs = vec![
            DataSpec {
                name: "orders".into(),
                address: "mysql://u:p@h/orders".into(),
                env: "ORDERS_DSN".into(),
                options: DataOptions::Mysql {
                    database: "orders".into(),
                    sample: None,
                },
            },
            DataSpec {
                name: "cache".into(),
                address: "redis://h:6379/1".into(),
                env: "REDIS_URL".into(),
                options: DataOptions::Redis {
                    index: 1,
                    mode: RedisMode::Database { first: 2, last: 15 },
                    copy: None,
                },
            },
            DataSpec {
                name: "events".into(),
                address: "kafka://b:9092".into(),
                env: "BROKERS".into(),
                options: DataOptions::Kafka {
                    topics: BTreeMap::from([("TOPIC".into(), "orders.created".into())]),
                    groups: BTreeMap::from([("GROUP".into(), "cart".into())]),
                },
            },
        ];
        let base = lane_env(&specs, None, &[]).unwrap();
        assert_eq!(
            base,
            [
                ("ORDERS_DSN", "mysql://u:p@h/orders"),
                ("REDIS_URL", "redis://h:6379/1"),
                ("BROKERS", "kafka://b:9092"),
                ("TOPIC", "orders.created"),
                ("GROUP", "cart"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        let l = lane("x");
        let err = lane_env(&specs, Some(&l), &[]).unwrap_err();
        assert!(matches!(err, RewriteError::NotProvisioned { .. }), "{err}");
        let records = vec![record(&specs[1], "5".into())];
        let env = lane_env(&specs, Some(&l), &records).unwrap();
        assert_eq!(
            env,
            [
                ("ORDERS_DSN", "mysql://u:p@h/orders__lane_x"),
                ("REDIS_URL", "redis://h:6379/5"),
                ("BROKERS", "kafka://b:9092"),
                ("TOPIC", "orders.created.lane-x"),
                ("GROUP", "cart.lane-x"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
    }
}
