//! The lane document and the rules for changing it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::id::{LaneId, ServiceId};

/// Seconds since the Unix epoch. The core never reads the clock: callers pass `now`.
pub type UnixSecs = u64;

/// Default lifetime of a lane created without `--ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest chain of parents a lane may have (itself excluded).
pub const MAX_CHAIN_DEPTH: usize = 8;

/// A personal version: one service built from a developer's branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalVersion {
    /// Human version label: `<branch>@<short commit>`, with `+dirty` when it was built from a
    /// working tree with uncommitted changes (as `git describe --dirty` says it).
    pub version: String,
    pub branch: String,
    pub commit: String,
    pub owner: String,
    pub deployed: UnixSecs,
    /// Built from a working tree that differs from `commit`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dirty: bool,
}

impl PersonalVersion {
    pub fn new(branch: &str, commit: &str, owner: &str, now: UnixSecs) -> Self {
        let short: String = commit.chars().take(8).collect();
        PersonalVersion {
            version: format!("{branch}@{short}"),
            branch: branch.to_owned(),
            commit: commit.to_owned(),
            owner: owner.to_owned(),
            deployed: now,
            dirty: false,
        }
    }

    /// The same version, marked as built from uncommitted changes when `dirty`.
    pub fn dirty(mut self, dirty: bool) -> Self {
        if dirty && !self.dirty {
            self.version.push_str("+dirty");
        }
        self.dirty |= dirty;
        self
    }
}

/// The kinds of data source a lane can isolate (see `docs/contracts.md`, "Data isolation").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataKind {
    /// A schema `<db>__lane_<id>` cloned from the baseline schema.
    Mysql,
    /// A database index from a pool, or a key prefix.
    Redis,
    /// Topics `<topic>.lane-<id>`.
    Kafka,
    /// An Apollo cluster `lane-<id>`.
    Apollo,
}

impl DataKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::Mysql => "mysql",
            DataKind::Redis => "redis",
            DataKind::Kafka => "kafka",
            DataKind::Apollo => "apollo",
        }
    }
}

impl std::fmt::Display for DataKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A data source a lane isolates: which kind, the baseline's name for it (a database, a topic),
/// and the lane's own copy of it (a schema, a database index, a topic, a cluster).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataBinding {
    pub kind: DataKind,
    pub name: String,
    pub target: String,
}

/// The lane document, as stored by every backend (`docs/contracts.md`, "The lane document").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lane {
    pub id: LaneId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<LaneId>,
    pub owner: String,
    pub created: UnixSecs,
    pub expires: UnixSecs,
    #[serde(default)]
    pub services: BTreeMap<ServiceId, PersonalVersion>,
    #[serde(default)]
    pub data: Vec<DataBinding>,
}

impl Lane {
    pub fn new(
        id: LaneId,
        parent: Option<LaneId>,
        owner: &str,
        now: UnixSecs,
        ttl: Duration,
    ) -> Self {
        Lane {
            id,
            parent,
            owner: owner.to_owned(),
            created: now,
            expires: now.saturating_add(ttl.as_secs()),
            services: BTreeMap::new(),
            data: Vec::new(),
        }
    }

    pub fn is_expired(&self, now: UnixSecs) -> bool {
        now >= self.expires
    }

    pub fn remaining(&self, now: UnixSecs) -> Duration {
        Duration::from_secs(self.expires.saturating_sub(now))
    }
}

/// Rule violations when changing lanes. Each message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaneRuleError {
    #[error("lane `{lane}` belongs to {owner}; pass --force to change it anyway")]
    NotOwner { lane: LaneId, owner: String },
    #[error("parent lane `{parent}` does not exist; create it first or drop --parent")]
    UnknownParent { parent: LaneId },
    #[error("lane `{lane}` cannot be its own ancestor (parent chain: {chain})")]
    Cycle { lane: LaneId, chain: String },
    #[error(
        "lane `{lane}` would be nested {depth} lanes deep; at most {MAX_CHAIN_DEPTH} are allowed"
    )]
    TooDeep { lane: LaneId, depth: usize },
}

/// Checks that `actor` may change `lane`.
pub fn check_owner(lane: &Lane, actor: &str, force: bool) -> Result<(), LaneRuleError> {
    if force || lane.owner == actor {
        Ok(())
    } else {
        Err(LaneRuleError::NotOwner {
            lane: lane.id.clone(),
            owner: lane.owner.clone(),
        })
    }
}

/// Checks that giving `lane` the parent `parent` keeps every chain finite and short.
pub fn check_parent<'a>(
    lane: &LaneId,
    parent: &LaneId,
    parent_of: impl Fn(&LaneId) -> Option<Option<&'a LaneId>>,
) -> Result<(), LaneRuleError> {
    let mut chain = vec![parent.clone()];
    let mut cursor = match parent_of(parent) {
        None => {
            return Err(LaneRuleError::UnknownParent {
                parent: parent.clone(),
            });
        }
        Some(p) => p,
    };
    if parent == lane {
        return Err(LaneRuleError::Cycle {
            lane: lane.clone(),
            chain: lane.to_string(),
        });
    }
    while let Some(p) = cursor {
        chain.push(p.clone());
        if p == lane {
            let chain = chain.iter().map(LaneId::as_str).collect::<Vec<_>>();
            return Err(LaneRuleError::Cycle {
                lane: lane.clone(),
                chain: chain.join(" → "),
            });
        }
        if chain.len() > MAX_CHAIN_DEPTH {
            return Err(LaneRuleError::TooDeep {
                lane: lane.clone(),
                depth: chain.len() + 1,
            });
        }
        cursor = parent_of(p).flatten();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn id(s: &str) -> LaneId {
        s.parse().unwrap()
    }

    #[test]
    fn expiry() {
        let lane = Lane::new(id("x"), None, "me", 100, Duration::from_secs(60));
        assert!(!lane.is_expired(159));
        assert!(lane.is_expired(160));
        assert_eq!(lane.remaining(130), Duration::from_secs(30));
        assert_eq!(lane.remaining(999), Duration::ZERO);
    }

    #[test]
    fn ownership() {
        let lane = Lane::new(id("x"), None, "alice@example.com", 0, DEFAULT_TTL);
        assert!(check_owner(&lane, "alice@example.com", false).is_ok());
        let err = check_owner(&lane, "bob", false).unwrap_err().to_string();
        assert_eq!(
            err,
            "lane `x` belongs to alice@example.com; pass --force to change it anyway"
        );
        assert!(check_owner(&lane, "bob", true).is_ok());
    }

    #[test]
    fn parents() {
        let mut parents: HashMap<LaneId, Option<LaneId>> = HashMap::new();
        parents.insert(id("team"), None);
        parents.insert(id("me"), Some(id("team")));
        let lookup = |l: &LaneId| parents.get(l).map(|p| p.as_ref());
        assert!(check_parent(&id("new"), &id("me"), lookup).is_ok());
        assert!(matches!(
            check_parent(&id("new"), &id("ghost"), lookup),
            Err(LaneRuleError::UnknownParent { .. })
        ));
        let err = check_parent(&id("team"), &id("me"), lookup).unwrap_err();
        assert_eq!(
            err.to_string(),
            "lane `team` cannot be its own ancestor (parent chain: me → team)"
        );
    }

    #[test]
    fn depth_is_bounded() {
        let mut parents: HashMap<LaneId, Option<LaneId>> = HashMap::new();
        parents.insert(id("l0"), None);
        for i in 1..=MAX_CHAIN_DEPTH {
            parents.insert(id(&format!("l{i}")), Some(id(&format!("l{}", i - 1))));
        }
        let lookup = |l: &LaneId| parents.get(l).map(|p| p.as_ref());
        let deep = id(&format!("l{}", MAX_CHAIN_DEPTH - 1));
        assert!(check_parent(&id("new"), &deep, lookup).is_ok());
        let too_deep = id(&format!("l{MAX_CHAIN_DEPTH}"));
        assert!(matches!(
            check_parent(&id("new"), &too_deep, lookup),
            Err(LaneRuleError::TooDeep { .. })
        ));
    }

    #[test]
    fn personal_version_label() {
        let v = PersonalVersion::new("feat/login", "0123456789abcdef", "me", 5);
        assert_eq!(v.version, "feat/login@01234567");
        assert!(!v.dirty);
        let d = v.clone().dirty(true).dirty(true);
        assert_eq!(d.version, "feat/login@01234567+dirty");
        assert!(d.dirty);
        assert_eq!(v.clone().dirty(false), v);
        // Old documents without the field read as clean.
        let json = serde_json::to_string(&v).unwrap();
        assert!(!json.contains("dirty"), "{json}");
        assert_eq!(serde_json::from_str::<PersonalVersion>(&json).unwrap(), v);
    }
}
