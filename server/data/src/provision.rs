//! Gives a lane its copies of a service's bindings, for a backend that provisions from the
//! developer's machine (the kubernetes backend); the local backend's agent runs
//! [`provision_one`] for each binding in its own process, recording each as it goes. What the lane holds already is kept: a MySQL
//! clone is made once, a Redis claim is found again, an Apollo cluster is adopted.

use lane_core::LaneId;
use lane_core::data::{
    DataOptions, DataSpec, RedisMode, apollo_cluster, apollo_items, record, redis_prefix,
};
use lane_core::lane::DataBinding;

use crate::error::DataError;
use crate::kafka::Kafka;
use crate::mysql::Mysql;
use crate::redis::Redis;
use crate::redis_copy::copy_keys;

/// Makes lane `lane`'s copy of one binding (a MySQL clone, a Redis claim with its copy of
/// baseline keys on a fresh claim, Kafka topics); `None` when the binding needs nothing made here
/// (Apollo, which [`provision`] does last). Redis in key-prefix mode needs nothing made either,
/// but answers the lane's prefix `lane:<id>:`: recorded like the other copies, it is listed with
/// the lane's data (`lane data ls`) and its keys are deleted with the lane. What the lane holds
/// already is kept. Shared by the local agent and [`provision`].
pub async fn provision_one(lane: &LaneId, spec: &DataSpec) -> Result<Option<String>, DataError> {
    let target = match &spec.options {
        DataOptions::Mysql { database, sample } => {
            let m = Mysql::connect(&spec.address).await?;
            let r = m.clone_schema(database, lane, *sample).await;
            m.close().await;
            let r = r?;
            tracing::info!(%lane, binding = %spec.name, database = %r.database, created = r.created, rows = r.rows, bytes = r.bytes, "lane database ready");
            r.database
        }
        DataOptions::Redis {
            index,
            mode: RedisMode::Database { first, last },
            copy,
        } => {
            let mut r = Redis::connect(&spec.address).await?;
            let (got, fresh) = r.claim(lane, *first, *last, *index).await?;
            tracing::info!(%lane, binding = %spec.name, index = got, "lane Redis database ready");
            // Baseline's keys are copied once, into the database the lane has just claimed.
            // A copy that fails gives the database back (flushed, claim and all), so the next
            // deploy claims one afresh and copies again.
            if let (Some(copy), true) = (copy, fresh) {
                let c = match copy_keys(&spec.address, *index, lane, got, copy).await {
                    Ok(c) => c,
                    Err(e) => {
                        if let Err(re) = r.release(lane, got).await {
                            tracing::warn!(%lane, binding = %spec.name, index = got, error = %re, "could not give back the Redis database of a failed copy");
                        }
                        return Err(e);
                    }
                };
                tracing::info!(%lane, binding = %spec.name, index = got, matched = c.matched, keys = c.keys, bytes = c.bytes, stopped = ?c.stopped, "baseline keys copied into the lane's Redis database");
            }
            got.to_string()
        }
        DataOptions::Kafka { topics, .. } => {
            let mut baselines: Vec<String> = topics.values().cloned().collect();
            baselines.sort();
            baselines.dedup();
            let mut k = Kafka::connect(&spec.address).await?;
            let made = k.create_lane_topics(lane, &baselines).await?;
            for t in &made {
                tracing::info!(%lane, binding = %spec.name, topic = %t.topic, partitions = t.partitions, configs = t.configs.len(), created = t.created, "lane Kafka topic ready");
            }
            made.iter()
                .map(|t| t.topic.as_str())
                .collect::<Vec<_>>()
                .join(",")
        }
        // Prefix mode needs nothing made: its copy is the lane's prefix (its keys).
        DataOptions::Redis {
            mode: RedisMode::Prefix { .. },
            ..
        } => redis_prefix(lane),
        // Apollo comes after the others.
        DataOptions::Apollo(_) => return Ok(None),
    };
    Ok(Some(target))
}

/// A binding that failed, with its name.
#[derive(Debug)]
pub struct Failed {
    pub binding: String,
    pub error: DataError,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "data binding `{}`: {}", self.binding, self.error)
    }
}

/// Provisions lane `lane`'s copies of `specs`; `held` is what its document records already.
/// Returns the records of every binding that has a copy (a prefix-mode Redis binding's is the
/// lane's prefix). Apollo comes last: its items are the other bindings' lane addresses.
pub async fn provision(
    lane: &LaneId,
    specs: &[DataSpec],
    held: &[DataBinding],
) -> std::result::Result<Vec<DataBinding>, Failed> {
    let fail = |spec: &DataSpec| {
        let binding = spec.name.clone();
        move |error| Failed { binding, error }
    };
    let mut records: Vec<DataBinding> = held.to_vec();
    let keep = |r: DataBinding, records: &mut Vec<DataBinding>| {
        records.retain(|d| !(d.name == r.name && d.kind == r.kind));
        records.push(r);
    };
    for spec in specs {
        let Some(target) = provision_one(lane, spec).await.map_err(fail(spec))? else {
            continue;
        };
        keep(record(spec, target), &mut records);
    }
    for spec in specs {
        if !matches!(spec.options, DataOptions::Apollo(_)) {
            continue;
        }
        let items = apollo_items(spec, specs, lane, &records)
            .map_err(|e| fail(spec)(DataError::Invalid(e.to_string())))?;
        crate::apollo::provision(spec, lane, &items)
            .await
            .map_err(fail(spec))?;
        keep(record(spec, apollo_cluster(lane)), &mut records);
    }
    // Only what these bindings hold, plus what the lane held for other services' bindings.
    Ok(records)
}
