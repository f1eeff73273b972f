//! The `consul` backend: [`lane_api::Backend`] on a Consul datacenter.
//!
//! - Lanes are JSON lane documents (`lane_core::Lane`) at `<prefix>-lane/lanes/<id>` in Consul KV.
//!   Every change reads the document with its `ModifyIndex` and writes it back with
//!   `?cas=<ModifyIndex>` (a create with `?cas=0`); a write that loses re-reads and re-applies the
//!   change, so two developers changing one lane at once never lose an update.
//! - Personal versions are the instances of `<prefix>-lane.<app>.<proc>` tagged `lane=<id>`;
//!   the baseline is every instance of `<prefix>.<app>.<proc>`, registered by its own deployment.
//! - `gc` claims an expired lane by deleting its document with `?cas=<ModifyIndex>`: of several
//!   `gc`s at once exactly one delete wins (a lane extended meanwhile has a new index and is not
//!   deleted), and only the winner deregisters the lane's instances. Instances whose lane no
//!   longer exists are deregistered too.
//! - The owner of a lane is the developer who created it (their git `user.email`); Consul ACLs
//!   decide what a token may do at all (docs/consul.md has the policy).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use lane_api::{
    AssignRequest, Backend, BackendError, Cancel, CreateLane, DeleteLane, DeployRequest,
    ExtendLane, GcReport, InstanceId, InstanceState, InstanceView, LaneView, Placement, ProgressTx,
    Result, Revision, Status,
};
use lane_core::lane::{DEFAULT_TTL, MAX_CHAIN_DEPTH, UnixSecs, check_owner, check_parent};
use lane_core::naming::{consul_baseline_name, consul_lane_key, consul_lane_name};
use lane_core::{Lane, LaneId, LaneRef, ServiceId};

use crate::client::{Blocking, Client, ServiceEntry};
use crate::config::{Options, Settings};

/// How many times a change is re-applied after losing a check-and-set before giving up.
const CAS_ATTEMPTS: u32 = 32;
/// The header requests carry their lane in (the routing components read it).
const LANE_HEADER: &str = "x-lane";

/// The `consul` backend. Opening it contacts nothing; the first call does, and an unreachable
/// Consul is an `unavailable` error naming the address and `CONSUL_HTTP_ADDR`.
pub struct ConsulBackend {
    client: Client,
}

impl ConsulBackend {
    /// From the environment (`CONSUL_HTTP_ADDR`, …) and `lane.toml`'s `[backend]`.
    pub fn open(opts: &Options) -> Result<ConsulBackend> {
        Ok(ConsulBackend {
            client: Client::new(Settings::from_env(opts)?)?,
        })
    }

    pub fn with_settings(settings: Settings) -> Result<ConsulBackend> {
        Ok(ConsulBackend {
            client: Client::new(settings)?,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn prefix(&self) -> &str {
        &self.client.settings().prefix
    }

    fn lanes_prefix(&self) -> String {
        format!("{}-lane/lanes/", self.prefix())
    }

    /// Every readable lane document with its `ModifyIndex`, and the KV index.
    async fn lanes(&self) -> Result<(Vec<(Lane, u64)>, u64)> {
        let (pairs, index) = self.client.kv_list(&self.lanes_prefix(), None).await?;
        let mut lanes = Vec::new();
        for p in pairs {
            match serde_json::from_slice::<Lane>(&p.value) {
                Ok(l) if p.key.ends_with(l.id.as_str()) => lanes.push((l, p.modify_index)),
                Ok(_) | Err(_) => {
                    tracing::warn!("{} in Consul KV is not a lane document; skipped", p.key);
                }
            }
        }
        lanes.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        Ok((lanes, index))
    }

    async fn lane(&self, id: &LaneId) -> Result<Option<(Lane, u64)>> {
        let key = consul_lane_key(self.prefix(), id);
        let (pair, _) = self.client.kv_get(&key).await?;
        match pair {
            None => Ok(None),
            Some(p) => serde_json::from_slice::<Lane>(&p.value)
                .map(|l| Some((l, p.modify_index)))
                .map_err(|e| {
                    BackendError::internal(format!(
                        "{key} in Consul KV is not a lane document: {e}"
                    ))
                    .with_help(format!(
                        "fix or delete it (consul kv delete {key}); lane writes it as JSON"
                    ))
                }),
        }
    }

    async fn existing(&self, id: &LaneId) -> Result<(Lane, u64)> {
        self.lane(id).await?.ok_or_else(|| {
            BackendError::not_found(format!(
                "lane `{id}` does not exist (no {} in Consul KV)",
                consul_lane_key(self.prefix(), id)
            ))
            .with_help("`lane ls` lists the lanes")
        })
    }

    /// Applies `change` to lane `id` with check-and-set, re-reading and re-applying it after
    /// every lost write. `change` sees the current document each time.
    async fn update(
        &self,
        id: &LaneId,
        mut change: impl FnMut(&mut Lane) -> Result<()>,
    ) -> Result<Lane> {
        let key = consul_lane_key(self.prefix(), id);
        for attempt in 0..CAS_ATTEMPTS {
            let (mut lane, index) = self.existing(id).await?;
            change(&mut lane)?;
            if self.client.kv_cas(&key, to_json(&lane)?, index).await? {
                return Ok(lane);
            }
            tracing::debug!("lost a check-and-set on {key} (attempt {attempt}); re-reading");
            backoff(attempt).await;
        }
        Err(BackendError::conflict(format!(
            "lane `{id}` kept changing under lane ({CAS_ATTEMPTS} check-and-set writes lost); \
             try again"
        )))
    }

    /// The instances of lane `lane`'s services (any health), by service.
    async fn lane_instances(&self, lane: &Lane) -> Result<Vec<(ServiceId, ServiceEntry)>> {
        let tag = format!("lane={}", lane.id);
        let mut out = Vec::new();
        for service in lane.services.keys() {
            let name = consul_lane_name(self.prefix(), service);
            let (entries, _) = self
                .client
                .health_service(&name, false, &[&tag], None)
                .await?;
            out.extend(entries.into_iter().map(|e| (service.clone(), e)));
        }
        Ok(out)
    }

    /// Deregisters the instances of a lane whose document is gone; the ids deregistered.
    async fn deregister_lane(&self, lane: &Lane) -> Result<Vec<InstanceId>> {
        let mut removed = Vec::new();
        for (_, e) in self.lane_instances(lane).await? {
            if self.client.deregister(&e.service.id).await? {
                removed.push(InstanceId::new(e.service.id.clone()));
            }
        }
        Ok(removed)
    }

    /// Lane instances (of any `<prefix>-lane.*` service) whose lane has no document.
    async fn orphans(&self, lanes: &[(Lane, u64)]) -> Result<Vec<ServiceEntry>> {
        let (services, _) = self.client.catalog_services(None).await?;
        let lane_prefix = format!("{}-lane.", self.prefix());
        let mut out = Vec::new();
        for name in services.keys().filter(|n| n.starts_with(&lane_prefix)) {
            let (entries, _) = self.client.health_service(name, false, &[], None).await?;
            for e in entries {
                let known = e
                    .tag("lane")
                    .is_some_and(|l| lanes.iter().any(|(lane, _)| lane.id.as_str() == l));
                if !known {
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    async fn current_revision(&self) -> Result<Revision> {
        let (_, kv) = self.client.kv_list(&self.lanes_prefix(), None).await?;
        let (_, catalog) = self.client.catalog_services(None).await?;
        Ok(revision(kv, catalog))
    }
}

fn revision(kv: u64, catalog: u64) -> Revision {
    Revision::new(format!("{kv}.{catalog}"))
}

fn parse_revision(r: &Revision) -> Option<(u64, u64)> {
    let (a, b) = r.as_str().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn to_json(lane: &Lane) -> Result<Vec<u8>> {
    serde_json::to_vec(lane).map_err(|e| BackendError::internal(format!("a lane document: {e}")))
}

/// A short, jittered pause before re-trying a lost check-and-set.
async fn backoff(attempt: u32) {
    let base = 5u64 << attempt.min(5);
    tokio::time::sleep(Duration::from_millis(base + fastrand::u64(0..=base))).await;
}

fn now() -> UnixSecs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An instance's state from its checks: passing is healthy, anything else receives no traffic.
fn state_of(entry: &ServiceEntry) -> InstanceState {
    match entry.status() {
        "passing" => InstanceState::Healthy,
        _ => InstanceState::Unhealthy,
    }
}

fn instance_view(
    service: &ServiceId,
    lane: LaneRef,
    entry: &ServiceEntry,
    version: Option<lane_core::PersonalVersion>,
) -> InstanceView {
    InstanceView {
        id: InstanceId::new(entry.service.id.clone()),
        service: service.clone(),
        lane,
        placement: Placement::Registered {
            address: entry.address(),
            node: Some(entry.node.node.clone()).filter(|n| !n.is_empty()),
        },
        state: state_of(entry),
        restarts: 0,
        version,
    }
}

/// The chain of `lane`: itself, its parent, … (as far as the documents go).
fn chain_of(lane: &Lane, parents: &BTreeMap<LaneId, Option<LaneId>>) -> Vec<LaneId> {
    let mut chain = vec![lane.id.clone()];
    let mut cursor = lane.parent.clone();
    while let Some(p) = cursor {
        if chain.contains(&p) || chain.len() > MAX_CHAIN_DEPTH {
            break;
        }
        cursor = parents.get(&p).cloned().flatten();
        chain.push(p);
    }
    chain
}

#[async_trait]
impl Backend for ConsulBackend {
    fn name(&self) -> &'static str {
        "consul"
    }

    async fn status(&self) -> Result<Status> {
        let (lanes, kv_index) = self.lanes().await?;
        let (services, catalog_index) = self.client.catalog_services(None).await?;
        let parents: BTreeMap<LaneId, Option<LaneId>> = lanes
            .iter()
            .map(|(l, _)| (l.id.clone(), l.parent.clone()))
            .collect();
        let mut views = Vec::new();
        for (lane, _) in &lanes {
            let mut instances = Vec::new();
            let found = self.lane_instances(lane).await?;
            for (service, version) in &lane.services {
                let mine: Vec<&ServiceEntry> = found
                    .iter()
                    .filter(|(s, _)| s == service)
                    .map(|(_, e)| e)
                    .collect();
                if mine.is_empty() {
                    // In the lane, not registered (its developer's machine is off, say).
                    instances.push(InstanceView {
                        id: InstanceId::new(format!(
                            "{}-{}",
                            consul_lane_name(self.prefix(), service),
                            lane.id
                        )),
                        service: service.clone(),
                        lane: LaneRef::Lane(lane.id.clone()),
                        placement: Placement::Registered {
                            address: String::new(),
                            node: None,
                        },
                        state: InstanceState::Stopped,
                        restarts: 0,
                        version: Some(version.clone()),
                    });
                }
                for e in mine {
                    instances.push(instance_view(
                        service,
                        LaneRef::Lane(lane.id.clone()),
                        e,
                        Some(version.clone()),
                    ));
                }
            }
            views.push(LaneView {
                lane: lane.clone(),
                chain: chain_of(lane, &parents),
                instances,
            });
        }
        let mut baseline = Vec::new();
        let base_prefix = format!("{}.", self.prefix());
        for name in services.keys() {
            let Some(service) = name
                .strip_prefix(&base_prefix)
                .and_then(|s| s.parse::<ServiceId>().ok())
            else {
                continue;
            };
            debug_assert_eq!(consul_baseline_name(self.prefix(), &service), *name);
            let (entries, _) = self.client.health_service(name, false, &[], None).await?;
            baseline.extend(
                entries
                    .iter()
                    .map(|e| instance_view(&service, LaneRef::Baseline, e, None)),
            );
        }
        Ok(Status {
            backend: "consul".into(),
            router: None,
            lane_header: LANE_HEADER.into(),
            active_lane: LaneRef::Baseline,
            now: now(),
            lanes: views,
            baseline,
            traffic: Vec::new(),
            revision: revision(kv_index, catalog_index),
        })
    }

    async fn create_lane(&self, req: CreateLane) -> Result<Lane> {
        if let Some(parent) = &req.parent {
            let (lanes, _) = self.lanes().await?;
            let parents: BTreeMap<LaneId, Option<LaneId>> = lanes
                .iter()
                .map(|(l, _)| (l.id.clone(), l.parent.clone()))
                .collect();
            check_parent(&req.id, parent, |p| parents.get(p).map(Option::as_ref))?;
        }
        let ttl = req.ttl_secs.map(Duration::from_secs).unwrap_or(DEFAULT_TTL);
        let lane = Lane::new(req.id.clone(), req.parent.clone(), &req.owner, now(), ttl);
        let key = consul_lane_key(self.prefix(), &req.id);
        if self.client.kv_cas(&key, to_json(&lane)?, 0).await? {
            Ok(lane)
        } else {
            Err(
                BackendError::conflict(format!("lane `{}` already exists", req.id))
                    .with_help("`lane extend` gives it more time; `lane rm` removes it"),
            )
        }
    }

    async fn delete_lane(&self, req: DeleteLane) -> Result<()> {
        let key = consul_lane_key(self.prefix(), &req.id);
        for attempt in 0..CAS_ATTEMPTS {
            let (lane, index) = self.existing(&req.id).await?;
            check_owner(&lane, &req.actor, req.force)?;
            // The document first: once it is gone the lane routes nowhere, and of two removals
            // (or a removal and a gc) exactly one wins.
            if self.client.kv_delete_cas(&key, index).await? {
                self.deregister_lane(&lane).await?;
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(BackendError::conflict(format!(
            "lane `{}` kept changing while it was being removed; try again",
            req.id
        )))
    }

    async fn extend_lane(&self, req: ExtendLane) -> Result<Lane> {
        let (lane, _) = self.existing(&req.id).await?;
        check_owner(&lane, &req.actor, req.force)?;
        self.update(&req.id, |lane| {
            lane.expires = lane.expires.max(now()).saturating_add(req.by_secs);
            Ok(())
        })
        .await
    }

    async fn deploy(
        &self,
        _req: DeployRequest,
        _progress: ProgressTx,
        _cancel: Cancel,
    ) -> Result<InstanceView> {
        Err(BackendError::invalid(
            "`lane deploy` with the consul backend is not part of this version of lane yet: \
             lanes (create, ls, status, extend, assign, rm, gc) work against Consul, running and \
             registering a personal version does not; nothing was started",
        )
        .with_help(
            "deploy with --backend local, or register the version yourself (docs/consul.md)",
        ))
    }

    async fn baseline_up(
        &self,
        _services: Vec<DeployRequest>,
        _progress: ProgressTx,
        _cancel: Cancel,
    ) -> Result<Vec<InstanceView>> {
        Err(BackendError::invalid(format!(
            "the consul backend does not run baselines: the baseline is what the team's \
             deployments register as {}.<app>.<proc>",
            self.prefix()
        )))
    }

    async fn assign(&self, req: AssignRequest) -> Result<()> {
        let (from, _) = self.existing(&req.from).await?;
        let (to, _) = self.existing(&req.to).await?;
        check_owner(&from, &req.actor, req.force)?;
        check_owner(&to, &req.actor, req.force)?;
        let Some(version) = from.services.get(&req.service).cloned() else {
            return Err(BackendError::not_found(format!(
                "lane `{}` has no version of {}",
                req.from, req.service
            )));
        };
        let registered = self
            .lane_instances(&from)
            .await?
            .into_iter()
            .filter(|(s, _)| s == &req.service)
            .count();
        if registered > 0 {
            return Err(BackendError::conflict(format!(
                "{} has {registered} registered instance(s) in lane `{}`; moving running \
                 instances between lanes is not part of this version of lane",
                req.service, req.from
            ))
            .with_help("stop the version (lane rm, or deregister it), then assign"));
        }
        // First into `to`, then out of `from`: if the second step fails the version is in both
        // lanes (and the error says so), never in none.
        self.update(&req.to, |lane| {
            lane.services.insert(req.service.clone(), version.clone());
            Ok(())
        })
        .await?;
        self.update(&req.from, |lane| {
            lane.services.remove(&req.service);
            Ok(())
        })
        .await
        .map_err(|e| {
            BackendError::new(
                e.code,
                format!(
                    "{} is now in lane `{}` but is still in lane `{}`: {}",
                    req.service, req.to, req.from, e.message
                ),
            )
        })?;
        Ok(())
    }

    async fn switch(&self, _lane: LaneRef) -> Result<()> {
        Err(BackendError::invalid(
            "the consul backend has no active lane: requests choose their lane with the lane \
             header (x-lane) or the `lane` baggage entry",
        ))
    }

    async fn gc(&self) -> Result<GcReport> {
        let (lanes, _) = self.lanes().await?;
        let now = now();
        let mut report = GcReport {
            lanes_removed: Vec::new(),
            instances_removed: Vec::new(),
        };
        for (lane, index) in &lanes {
            if !lane.is_expired(now) {
                continue;
            }
            let key = consul_lane_key(self.prefix(), &lane.id);
            // Claims the lane: only one of several gcs (and no lane extended meanwhile) wins.
            if self.client.kv_delete_cas(&key, *index).await? {
                report
                    .instances_removed
                    .extend(self.deregister_lane(lane).await?);
                report.lanes_removed.push(lane.id.clone());
            }
        }
        let remaining: Vec<(Lane, u64)> = lanes
            .into_iter()
            .filter(|(l, _)| !report.lanes_removed.contains(&l.id))
            .collect();
        for e in self.orphans(&remaining).await? {
            // A lane created since the list was read is no orphan's lane: look again.
            if let Some(l) = e.tag("lane").and_then(|l| l.parse::<LaneId>().ok())
                && self.lane(&l).await?.is_some()
            {
                continue;
            }
            if self.client.deregister(&e.service.id).await? {
                report
                    .instances_removed
                    .push(InstanceId::new(e.service.id.clone()));
            }
        }
        Ok(report)
    }

    async fn wait_for_change(
        &self,
        since: Option<&Revision>,
        timeout: Duration,
    ) -> Result<Revision> {
        let Some((kv, catalog)) = since.and_then(parse_revision) else {
            return self.current_revision().await;
        };
        let wait = timeout.max(Duration::from_millis(1));
        let prefix = self.lanes_prefix();
        let lanes = self
            .client
            .kv_list(&prefix, Some(Blocking { index: kv, wait }));
        let services = self.client.catalog_services(Some(Blocking {
            index: catalog,
            wait,
        }));
        tokio::pin!(lanes, services);
        // Whichever answers first with a new index; an answer with the same index (the wait ran
        // out) waits for the other.
        let mut lanes_done = false;
        let mut services_done = false;
        while !(lanes_done && services_done) {
            tokio::select! {
                r = &mut lanes, if !lanes_done => {
                    let (_, i) = r?;
                    if i != kv {
                        return self.current_revision().await;
                    }
                    lanes_done = true;
                }
                r = &mut services, if !services_done => {
                    let (_, i) = r?;
                    if i != catalog {
                        return self.current_revision().await;
                    }
                    services_done = true;
                }
            }
        }
        Ok(revision(kv, catalog))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_round_trip() {
        assert_eq!(parse_revision(&revision(7, 9)), Some((7, 9)));
        assert_eq!(parse_revision(&Revision::new("x")), None);
    }

    #[test]
    fn chains_stop_at_cycles_and_missing_parents() {
        let a: LaneId = "a".parse().unwrap();
        let b: LaneId = "b".parse().unwrap();
        let lane = Lane::new(a.clone(), Some(b.clone()), "o", 0, DEFAULT_TTL);
        let parents = BTreeMap::from([(a.clone(), Some(b.clone())), (b.clone(), Some(a.clone()))]);
        assert_eq!(chain_of(&lane, &parents), vec![a.clone(), b.clone()]);
        let parents = BTreeMap::from([(a.clone(), Some(b.clone()))]);
        assert_eq!(chain_of(&lane, &parents), vec![a, b]);
    }
}
