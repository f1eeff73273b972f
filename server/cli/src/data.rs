//! `lane data ls`: what each lane owns of its data sources (the bindings recorded in the lane
//! documents, and the key-prefix Redis bindings of the services the lane runs, for a lane
//! deployed before their prefixes were recorded), with sizes and quotas where the service's `lane.toml` around the current directory
//! declares the binding (its address is needed to ask the server).

use std::path::Path;

use lane_api::{Backend, BackendError, find_lane};
use lane_core::data::{DataOptions, DataSpec, RedisMode};
use lane_core::lane::DataKind;
use lane_core::{LaneId, ServiceId};
use serde::Serialize;

/// One binding a lane holds data for: a row of `lane data ls` and of the `lane.data.ls` LSP
/// command.
#[derive(Debug, Serialize)]
pub(crate) struct Row {
    pub lane: String,
    pub binding: String,
    pub kind: DataKind,
    /// The lane's own copy: a database, a Redis index or key prefix (`lane:<id>:`), its topics
    /// (comma-separated), a cluster.
    pub target: String,
    /// Bytes (MySQL: data and indexes), keys (Redis; in key-prefix mode with approximate bytes),
    /// partitions and records (Kafka) or items (Apollo), when the server could be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// The sample quota (MySQL) or the pool (Redis), from lane.toml here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
}

/// The quota or pool of a binding, for people.
fn quota(spec: &DataSpec) -> Option<String> {
    match &spec.options {
        DataOptions::Mysql {
            sample: Some(s), ..
        } => Some(format!("{} rows/table, {} bytes", s.rows, s.bytes)),
        DataOptions::Mysql { sample: None, .. } => Some("schema only".into()),
        DataOptions::Redis {
            mode: RedisMode::Database { first, last },
            copy,
            ..
        } => Some(match copy {
            None => format!("pool {first}..={last}"),
            Some(c) => format!(
                "pool {first}..={last}, copy {} ({} keys, {} bytes)",
                c.patterns.join(" "),
                c.keys,
                c.bytes
            ),
        }),
        _ => None,
    }
}

/// How many keys of a key-prefix binding `lane data ls` measures with `MEMORY USAGE` (the
/// bytes of the rest are extrapolated from them).
const PREFIX_SAMPLE: u64 = 1000;

async fn size(spec: &DataSpec, target: &str) -> Option<String> {
    match &spec.options {
        DataOptions::Mysql { .. } => {
            let m = lane_data::mysql::Mysql::connect(&spec.address).await.ok()?;
            let dbs = m.lane_databases().await.ok();
            m.close().await;
            dbs?.into_iter()
                .find(|(name, _)| name == target)
                .map(|(_, bytes)| format!("{bytes} bytes"))
        }
        DataOptions::Redis {
            mode: RedisMode::Database { .. },
            ..
        } => {
            let index: u32 = target.parse().ok()?;
            let mut r = lane_data::redis::Redis::connect(&spec.address).await.ok()?;
            let slot = r.slots(index, index).await.ok()?.pop()?;
            Some(format!("{} keys", slot.keys))
        }
        DataOptions::Redis {
            mode: RedisMode::Prefix { .. },
            index,
            ..
        } => {
            let mut r = lane_data::redis::Redis::connect(&spec.address).await.ok()?;
            let u = r.prefix_usage(*index, target, PREFIX_SAMPLE).await.ok()?;
            Some(format!("{} keys, ~{} bytes (approximate)", u.keys, u.bytes))
        }
        DataOptions::Kafka { .. } => {
            let mut k = lane_data::kafka::Kafka::connect(&spec.address).await.ok()?;
            let (mut partitions, mut records) = (0, 0);
            for topic in target.split(',').filter(|t| !t.is_empty()) {
                partitions += k.shape(topic).await.ok()??.partitions;
                records += k.records(topic).await.ok()?;
            }
            Some(format!("{partitions} partitions, {records} records"))
        }
        DataOptions::Apollo(_) => lane_data::apollo::item_count(spec, target)
            .await
            .ok()
            .map(|n| format!("{n} items")),
    }
}

pub async fn ls(backend: &dyn Backend, here: &Path, json: bool) -> anyhow::Result<u8> {
    let declared = crate::data_transfer::declared_in(here);
    let rows = rows(backend, &declared).await?;
    print_rows(&rows, json)
}

/// Every lane's data, with sizes and quotas for the bindings among `declared` (each with the
/// service whose `lane.toml` declares it): what the lane's document records, and the key-prefix
/// bindings of `declared` whose service the lane runs (recorded by today's deploys; a lane
/// deployed before has no record of them).
pub(crate) async fn rows(
    backend: &dyn Backend,
    declared: &[(ServiceId, DataSpec)],
) -> anyhow::Result<Vec<Row>> {
    let status = backend.status().await?;
    let mut rows = Vec::new();
    for view in &status.lanes {
        let lane = &view.lane;
        let runs = declared
            .iter()
            .filter(|(service, _)| lane.services.contains_key(service))
            .map(|(_, s)| s);
        for d in crate::data_transfer::held(&lane.id, &lane.data, runs) {
            let spec = declared
                .iter()
                .map(|(_, s)| s)
                .find(|s| s.name == d.name && s.kind() == d.kind);
            let (size, quota) = match spec {
                Some(s) => (size(s, &d.target).await, quota(s)),
                None => (None, None),
            };
            rows.push(Row {
                lane: lane.id.to_string(),
                binding: d.name,
                kind: d.kind,
                target: d.target,
                size,
                quota,
            });
        }
    }
    Ok(rows)
}

fn print_rows(rows: &[Row], json: bool) -> anyhow::Result<u8> {
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no lane owns data");
        return Ok(0);
    }
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.lane.clone(),
                r.binding.clone(),
                r.kind.to_string(),
                r.target.clone(),
                dash(&r.size),
                dash(&r.quota),
            ]
        })
        .collect();
    let head = ["LANE", "BINDING", "KIND", "TARGET", "SIZE", "QUOTA"];
    let mut widths = head.map(str::len);
    for row in &table {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(head.to_vec());
    for row in &table {
        line(row.iter().map(String::as_str).collect());
    }
    Ok(0)
}

/// `lane rm <lane> --dry-run`: the data teardown plan, from the lane's records and the bindings of
/// the lane.toml here, checked by the same guard as the real teardown. Removes nothing.
pub async fn rm_plan(backend: &dyn Backend, here: &Path, id: &LaneId) -> anyhow::Result<u8> {
    let status = backend.status().await?;
    let view = find_lane(&status, id)
        .ok_or_else(|| BackendError::not_found(format!("lane `{id}` does not exist")))?;
    let specs: Vec<DataSpec> = lane_workspace::load_manifest(here)
        .map(|m| m.data)
        .unwrap_or_default();
    let plan = lane_data::teardown::plan(id, &specs, &view.lane.data)
        .map_err(|e| BackendError::invalid(e.to_string()))?;
    println!("dry run: `lane rm {id}` would stop the lane's versions and remove its routes, and:");
    print!("{plan}");
    for d in &view.lane.data {
        if !specs.iter().any(|s| s.name == d.name && s.kind() == d.kind) {
            println!(
                "{}: the lane holds `{}` ({}), from a binding the lane.toml here does not declare \
                 (run this in that service's directory to see its server)",
                d.name, d.target, d.kind
            );
        }
    }
    println!("nothing was removed");
    Ok(0)
}
