//! What deleting a lane does to its data, as a plan that can be printed (`--dry-run`) or run,
//! and the guard every destructive step passes first: it refuses any name that is not the lane's
//! own (`<db>__lane_<id>` of one of the lane's bindings; a Redis database the lane's claim holds;
//! the lane's key prefix; `<topic>.lane-<id>` of a topic one of the lane's bindings lists).
//! Baseline's names never pass it.

use std::fmt;

use lane_core::LaneId;
use lane_core::data::{
    DataOptions, DataSpec, RedisMode, mysql_database, redact, redis_prefix, rewrite_group,
    rewrite_topic,
};
use lane_core::lane::{DataBinding, DataKind};
use serde::Serialize;

use crate::error::{DataError, Result};
use crate::kafka::wire::groups::check_group_delete;
use crate::kafka::{Kafka, check_topic_delete};
use crate::mysql::Mysql;
use crate::redis::Redis;

/// One step of a teardown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// `DROP DATABASE <database>` on the binding's server.
    DropDatabase {
        binding: String,
        /// The server, without the password.
        server: String,
        baseline: String,
        database: String,
    },
    /// `FLUSHDB` of the lane's Redis database, when the lane's claim holds it.
    FlushRedis {
        binding: String,
        server: String,
        index: u32,
    },
    /// Delete the lane's keys (prefix mode).
    DeletePrefix {
        binding: String,
        server: String,
        index: u32,
        prefix: String,
    },
    /// Delete the lane's Kafka topic `<topic>.lane-<id>`.
    DeleteTopic {
        binding: String,
        server: String,
        baseline: String,
        topic: String,
    },
    /// Delete the lane's Apollo cluster `lane-<id>` of the binding's app.
    DeleteApolloCluster {
        binding: String,
        server: String,
        env: String,
        app: String,
        cluster: String,
    },
    /// Delete the lane's consumer group `<group>.lane-<id>`.
    DeleteGroup {
        binding: String,
        server: String,
        baseline: String,
        group: String,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::DropDatabase {
                binding,
                server,
                database,
                ..
            } => write!(f, "{binding}: drop MySQL database `{database}` on {server}"),
            Action::FlushRedis {
                binding,
                server,
                index,
            } => write!(f, "{binding}: flush Redis database {index} on {server}"),
            Action::DeletePrefix {
                binding,
                server,
                index,
                prefix,
            } => write!(
                f,
                "{binding}: delete keys `{prefix}*` in Redis database {index} on {server}"
            ),
            Action::DeleteTopic {
                binding,
                server,
                topic,
                ..
            } => write!(f, "{binding}: delete Kafka topic `{topic}` on {server}"),
            Action::DeleteApolloCluster {
                binding,
                server,
                env,
                app,
                cluster,
            } => write!(
                f,
                "{binding}: delete Apollo cluster `{cluster}` of app `{app}` in {env} on {server}"
            ),
            Action::DeleteGroup {
                binding,
                server,
                group,
                ..
            } => write!(
                f,
                "{binding}: delete Kafka consumer group `{group}` on {server}"
            ),
        }
    }
}

/// A lane's teardown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub lane: LaneId,
    pub actions: Vec<Action>,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.actions.is_empty() {
            writeln!(f, "lane `{}` owns no data to remove", self.lane)?;
        }
        for a in &self.actions {
            writeln!(f, "{a}")?;
        }
        Ok(())
    }
}

/// The guard for dropping a MySQL database: `database` must be exactly lane `lane`'s database
/// for baseline database `baseline`, and never the baseline itself.
pub fn check_mysql_drop(baseline: &str, lane: &LaneId, database: &str) -> Result<()> {
    let own = mysql_database("", baseline, lane)
        .map_err(|e| DataError::Guard(format!("`{database}`: {e}")))?;
    if database == baseline || database != own || !own.starts_with(baseline) {
        return Err(DataError::Guard(format!(
            "`{database}` is not lane `{lane}`'s database (that is `{own}`); nothing was dropped"
        )));
    }
    Ok(())
}

/// The guard for a plan's step, against the lane's bindings.
pub fn check(lane: &LaneId, specs: &[DataSpec], action: &Action) -> Result<()> {
    let spec = |name: &str| {
        specs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| DataError::Guard(format!("`{name}` is not one of the lane's bindings")))
    };
    match action {
        Action::DropDatabase {
            binding,
            baseline,
            database,
            ..
        } => {
            let s = spec(binding)?;
            match &s.options {
                DataOptions::Mysql { database: b, .. } if b == baseline => {}
                _ => {
                    return Err(DataError::Guard(format!(
                        "binding `{binding}` is not a MySQL binding of database `{baseline}`"
                    )));
                }
            }
            check_mysql_drop(baseline, lane, database)
        }
        Action::FlushRedis { binding, index, .. } => {
            let s = spec(binding)?;
            match &s.options {
                DataOptions::Redis {
                    index: base,
                    mode: RedisMode::Database { first, last },
                    ..
                } if index != base && (first..=last).contains(&index) => Ok(()),
                _ => Err(DataError::Guard(format!(
                    "Redis database {index} is not in binding `{binding}`'s pool, or is baseline's"
                ))),
            }
        }
        Action::DeleteApolloCluster {
            binding,
            env,
            app,
            cluster,
            ..
        } => {
            let s = spec(binding)?;
            match &s.options {
                DataOptions::Apollo(a) if a.app == *app && a.env == *env => {
                    crate::apollo::check_cluster(lane, cluster)
                }
                _ => Err(DataError::Guard(format!(
                    "binding `{binding}` is not an apollo binding of app `{app}` in {env}"
                ))),
            }
        }
        Action::DeletePrefix {
            binding, prefix, ..
        } => {
            spec(binding)?;
            if *prefix == redis_prefix(lane) {
                Ok(())
            } else {
                Err(DataError::Guard(format!(
                    "`{prefix}` is not lane `{lane}`'s key prefix"
                )))
            }
        }
        Action::DeleteTopic {
            binding,
            baseline,
            topic,
            ..
        } => {
            let s = spec(binding)?;
            match &s.options {
                DataOptions::Kafka { topics, .. } if topics.values().any(|t| t == baseline) => {}
                _ => {
                    return Err(DataError::Guard(format!(
                        "binding `{binding}` is not a Kafka binding of topic `{baseline}`"
                    )));
                }
            }
            check_topic_delete(baseline, lane, topic)
        }
        Action::DeleteGroup {
            binding,
            baseline,
            group,
            ..
        } => {
            let s = spec(binding)?;
            match &s.options {
                DataOptions::Kafka { groups, .. } if groups.values().any(|g| g == baseline) => {}
                _ => {
                    return Err(DataError::Guard(format!(
                        "binding `{binding}` is not a Kafka binding of consumer group `{baseline}`"
                    )));
                }
            }
            check_group_delete(baseline, lane, group)
        }
    }
}

/// The plan for tearing down lane `lane`'s data: its bindings (`specs`) and what was recorded as
/// provisioned (`records`). Pure.
pub fn plan(lane: &LaneId, specs: &[DataSpec], records: &[DataBinding]) -> Result<Plan> {
    let mut actions = Vec::new();
    for s in specs {
        let server = redact(&s.address);
        match &s.options {
            DataOptions::Mysql { database, .. } => actions.push(Action::DropDatabase {
                binding: s.name.clone(),
                server,
                baseline: database.clone(),
                database: mysql_database(&s.name, database, lane)
                    .map_err(|e| DataError::Invalid(e.to_string()))?,
            }),
            DataOptions::Redis { mode, index, .. } => match mode {
                RedisMode::Database { .. } => {
                    if let Some(r) = records
                        .iter()
                        .find(|r| r.kind == DataKind::Redis && r.name == s.name)
                    {
                        let index = r.target.parse::<u32>().map_err(|_| {
                            DataError::Invalid(format!(
                                "the lane's record for `{}` holds `{}`, not a database index",
                                s.name, r.target
                            ))
                        })?;
                        actions.push(Action::FlushRedis {
                            binding: s.name.clone(),
                            server,
                            index,
                        });
                    }
                }
                RedisMode::Prefix { .. } => actions.push(Action::DeletePrefix {
                    binding: s.name.clone(),
                    server,
                    index: *index,
                    prefix: redis_prefix(lane),
                }),
            },
            DataOptions::Kafka { topics, groups } => {
                let mut baselines: Vec<&String> = topics.values().collect();
                baselines.sort();
                baselines.dedup();
                for t in baselines {
                    actions.push(Action::DeleteTopic {
                        binding: s.name.clone(),
                        server: server.clone(),
                        baseline: t.clone(),
                        topic: rewrite_topic(t, lane),
                    });
                }
                let mut baselines: Vec<&String> = groups.values().collect();
                baselines.sort();
                baselines.dedup();
                for g in baselines {
                    actions.push(Action::DeleteGroup {
                        binding: s.name.clone(),
                        server: server.clone(),
                        baseline: g.clone(),
                        group: rewrite_group(g, lane),
                    });
                }
            }
            DataOptions::Apollo(a) => actions.push(Action::DeleteApolloCluster {
                binding: s.name.clone(),
                server,
                env: a.env.clone(),
                app: a.app.clone(),
                cluster: lane_core::data::apollo_cluster(lane),
            }),
        }
    }
    // Consumer groups first: a group that still has members (a lane process still running) stops
    // the teardown before anything else is removed.
    actions.sort_by_key(|a| !matches!(a, Action::DeleteGroup { .. }));
    let plan = Plan {
        lane: lane.clone(),
        actions,
    };
    for a in &plan.actions {
        check(lane, specs, a)?;
    }
    Ok(plan)
}

/// What running a plan did, step by step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Done {
    pub action: Action,
    /// `false`: there was nothing to remove (never provisioned, or removed before).
    pub removed: bool,
}

/// Runs `plan`, each step guarded again. Stops at the first failure.
pub async fn execute(plan: &Plan, specs: &[DataSpec]) -> Result<Vec<Done>> {
    let mut done = Vec::new();
    for action in &plan.actions {
        check(&plan.lane, specs, action)?;
        let url = |binding: &str| {
            specs
                .iter()
                .find(|s| s.name == binding)
                .map(|s| s.address.clone())
                .expect("checked by the guard")
        };
        let removed = match action {
            Action::DropDatabase {
                binding,
                baseline,
                database,
                ..
            } => {
                let m = Mysql::connect(&url(binding)).await?;
                let r = m.drop_lane_database(baseline, &plan.lane, database).await;
                // And what an interrupted import left next to it (guarded the same way).
                let staged = match &r {
                    Ok(_) => crate::transfer::mysql::drop_staging(&m, baseline, &plan.lane).await,
                    Err(_) => Ok(0),
                };
                m.close().await;
                staged?;
                r?
            }
            Action::FlushRedis { binding, index, .. } => {
                let mut r = Redis::connect(&url(binding)).await?;
                let released = r.release(&plan.lane, *index).await?;
                // And what an interrupted import left in the pool.
                if let Some(DataOptions::Redis {
                    mode: RedisMode::Database { first, last },
                    ..
                }) = specs
                    .iter()
                    .find(|s| s.name == *binding)
                    .map(|s| &s.options)
                {
                    crate::transfer::redis::clean_staging(&mut r, &plan.lane, *first, *last)
                        .await?;
                }
                released
            }
            Action::DeletePrefix {
                binding,
                index,
                prefix,
                ..
            } => {
                let mut r = Redis::connect(&url(binding)).await?;
                // And what an interrupted import left under the lane's staging prefix.
                crate::transfer::redis::clean_prefix_staging(&mut r, &plan.lane, *index).await?;
                r.delete_prefix(*index, prefix).await? > 0
            }
            Action::DeleteTopic {
                binding,
                baseline,
                topic,
                ..
            } => {
                let mut k = Kafka::connect(&url(binding)).await?;
                let removed = k.delete_lane_topic(baseline, &plan.lane, topic).await?;
                // And what an interrupted import left next to it (guarded the same way).
                crate::transfer::kafka::delete_staging(&mut k, baseline, &plan.lane).await?;
                removed
            }
            Action::DeleteApolloCluster {
                binding, cluster, ..
            } => {
                let spec = specs
                    .iter()
                    .find(|s| s.name == *binding)
                    .expect("checked by the guard");
                match crate::apollo::remove(spec, &plan.lane, cluster).await? {
                    crate::apollo::Removal::Deleted => true,
                    crate::apollo::Removal::Absent => false,
                    crate::apollo::Removal::Emptied { items } => {
                        tracing::warn!(lane = %plan.lane, %cluster, items, "this Apollo Portal's Open API cannot delete a cluster: the lane's cluster is emptied and published empty; an Apollo admin can delete it in the Portal");
                        true
                    }
                }
            }
            Action::DeleteGroup {
                binding,
                baseline,
                group,
                ..
            } => {
                let mut k = Kafka::connect(&url(binding)).await?;
                k.delete_lane_group(baseline, &plan.lane, group).await?
            }
        };
        done.push(Done {
            action: action.clone(),
            removed,
        });
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn specs() -> Vec<DataSpec> {
        lane_core::manifest::Manifest::parse(
            Path::new("lane.toml"),
            r#"
app = "a"
proc = "b"
[run]
command = "x"
[data.orders]
kind = "mysql"
url = "mysql://u:secret@db/orders"
env = "DSN"
[data.cache]
kind = "redis"
url = "redis://r/1"
env = "R"
pool = [2, 5]
[data.events]
kind = "kafka"
url = "kafka://k:9092"
env = "K"
topics = { T = "t" }
groups = { G = "cart" }
[data.config]
kind = "apollo"
url = "http://p:8070"
env = "APOLLO_META"
app = "cart"
"#,
        )
        .unwrap()
        .data
    }

    #[test]
    fn the_plan_names_only_the_lanes_own() {
        let lane: LaneId = "feat-a".parse().unwrap();
        let records = vec![DataBinding {
            kind: DataKind::Redis,
            name: "cache".into(),
            target: "3".into(),
        }];
        let p = plan(&lane, &specs(), &records).unwrap();
        assert_eq!(
            p.to_string(),
            "events: delete Kafka consumer group `cart.lane-feat-a` on kafka://k:9092\n\
             cache: flush Redis database 3 on redis://r/1\n\
             config: delete Apollo cluster `lane-feat-a` of app `cart` in DEV on http://p:8070\n\
             events: delete Kafka topic `t.lane-feat-a` on kafka://k:9092\n\
             orders: drop MySQL database `orders__lane_feat_a` on mysql://u:***@db/orders\n"
        );
    }

    #[test]
    fn the_guard_refuses_anything_else() {
        let lane: LaneId = "feat-a".parse().unwrap();
        let specs = specs();
        let drop = |database: &str| Action::DropDatabase {
            binding: "orders".into(),
            server: String::new(),
            baseline: "orders".into(),
            database: database.into(),
        };
        assert!(check(&lane, &specs, &drop("orders__lane_feat_a")).is_ok());
        for bad in [
            "orders",
            "orders__lane_feat_b",
            "orders__lane_feat_a_x",
            "other__lane_feat_a",
            "mysql",
            "orders__lane_feat_a`; DROP DATABASE orders; --",
        ] {
            let err = check(&lane, &specs, &drop(bad)).unwrap_err();
            assert!(matches!(err, DataError::Guard(_)), "{bad}: {err}");
        }
        let wrong_binding = Action::DropDatabase {
            binding: "cache".into(),
            server: String::new(),
            baseline: "orders".into(),
            database: "orders__lane_feat_a".into(),
        };
        assert!(check(&lane, &specs, &wrong_binding).is_err());
        let flush = |index| Action::FlushRedis {
            binding: "cache".into(),
            server: String::new(),
            index,
        };
        assert!(check(&lane, &specs, &flush(2)).is_ok());
        assert!(check(&lane, &specs, &flush(1)).is_err(), "baseline's index");
        assert!(check(&lane, &specs, &flush(6)).is_err(), "outside the pool");
        let prefix = |p: &str| Action::DeletePrefix {
            binding: "cache".into(),
            server: String::new(),
            index: 1,
            prefix: p.into(),
        };
        assert!(check(&lane, &specs, &prefix("lane:feat-a:")).is_ok());
        assert!(check(&lane, &specs, &prefix("")).is_err());
        assert!(check(&lane, &specs, &prefix("lane:")).is_err());
        assert!(check_mysql_drop("orders", &lane, "orders").is_err());
        let topic = |binding: &str, baseline: &str, t: &str| Action::DeleteTopic {
            binding: binding.into(),
            server: String::new(),
            baseline: baseline.into(),
            topic: t.into(),
        };
        assert!(check(&lane, &specs, &topic("events", "t", "t.lane-feat-a")).is_ok());
        for (b, base, t) in [
            ("events", "t", "t"),
            ("events", "t", "t.lane-feat-b"),
            ("events", "u", "u.lane-feat-a"),
            ("orders", "t", "t.lane-feat-a"),
            ("events", "t", "t.lane-feat-a,t"),
        ] {
            assert!(
                matches!(
                    check(&lane, &specs, &topic(b, base, t)),
                    Err(DataError::Guard(_))
                ),
                "{b} {base} {t}"
            );
        }
        let apollo = |app: &str, cluster: &str| Action::DeleteApolloCluster {
            binding: "config".into(),
            server: String::new(),
            env: "DEV".into(),
            app: app.into(),
            cluster: cluster.into(),
        };
        assert!(check(&lane, &specs, &apollo("cart", "lane-feat-a")).is_ok());
        assert!(check(&lane, &specs, &apollo("cart", "default")).is_err());
        assert!(check(&lane, &specs, &apollo("cart", "lane-feat-b")).is_err());
        assert!(check(&lane, &specs, &apollo("other", "lane-feat-a")).is_err());
        let group = |binding: &str, baseline: &str, g: &str| Action::DeleteGroup {
            binding: binding.into(),
            server: String::new(),
            baseline: baseline.into(),
            group: g.into(),
        };
        assert!(check(&lane, &specs, &group("events", "cart", "cart.lane-feat-a")).is_ok());
        for (b, base, g) in [
            ("events", "cart", "cart"),
            ("events", "cart", "cart.lane-feat-b"),
            ("events", "other", "other.lane-feat-a"),
            ("orders", "cart", "cart.lane-feat-a"),
        ] {
            assert!(
                matches!(
                    check(&lane, &specs, &group(b, base, g)),
                    Err(DataError::Guard(_))
                ),
                "{b} {base} {g}"
            );
        }
    }
}
