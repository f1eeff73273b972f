//! Gives a lane its copies of a service's bindings, for a backend that provisions from the
//! developer's machine (the kubernetes backend; the local backend's agent does the same steps in
//! its own process, recording each as it goes). What the lane holds already is kept: a MySQL
//! clone is made once, a Redis claim is found again, an Apollo cluster is adopted.

use lane_core::LaneId;
use lane_core::data::{DataOptions, DataSpec, RedisMode, apollo_cluster, apollo_items, record};
use lane_core::lane::DataBinding;

use crate::error::DataError;
use crate::mysql::Mysql;
use crate::redis::Redis;

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
/// Returns the records of every binding that has a copy (prefix-mode Redis and Kafka need none
/// made and get no record). Apollo comes last: its items are the other bindings' lane addresses.
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
        let target = match &spec.options {
            DataOptions::Mysql { database, sample } => {
                let m = Mysql::connect(&spec.address).await.map_err(fail(spec))?;
                let r = m.clone_schema(database, lane, *sample).await;
                m.close().await;
                r.map_err(fail(spec))?.database
            }
            DataOptions::Redis {
                index,
                mode: RedisMode::Database { first, last },
            } => {
                let mut r = Redis::connect(&spec.address).await.map_err(fail(spec))?;
                r.allocate(lane, *first, *last, *index)
                    .await
                    .map_err(fail(spec))?
                    .to_string()
            }
            _ => continue,
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
