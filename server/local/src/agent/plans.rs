//! Operations as recorded plans (see [`Plan`]): every operation that changes the state records
//! what it does in `state.json` in the same atomic save as the change, carries out its effects
//! outside the state (stopping processes, deleting logs) in the agent's own task, whoever waits
//! for it, and then forgets the plan. An agent that starts and finds plans finishes or undoes each
//! ([`Agent::recover`]).
//!
//! These are the operations on lanes (create, delete, extend, switch, assign, gc, expiry); deploys
//! are plans too, in `agent.rs`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use lane_core::lane::check_owner;
use lane_core::{Lane, LaneId, LaneRef};

use super::{Agent, new_lane, no_lane, now_secs};
use crate::store::{Plan, PlanKind, PlanPhase, State};
use crate::supervisor::{adoptable, kill_strays, probe, reclaim_stale, strays, wait_gone};
use lane_api::{
    AssignRequest, BackendError, CreateLane, DeleteLane, DeployId, ExtendLane, GcReport,
    InstanceId, InstanceState, LaneEvent, Result,
};

/// How long a starting agent waits for the processes of its predecessor it killed to be gone
/// (their ports are about to be used again).
const RECLAIM_WAIT: Duration = Duration::from_secs(3);

impl Agent {
    /// A fresh plan id (unique across agents: the counter is in the state).
    pub(super) fn plan_id(st: &mut State, kind: PlanKind) -> DeployId {
        st.next_seq += 1;
        DeployId::new(format!("{}-{}", kind.as_str(), st.next_seq))
    }

    /// Saves a change the caller made to `st` together with the plan it recorded; when the save
    /// fails, `st` goes back to `before` and nothing happened.
    pub(super) fn record(&self, st: &mut State, before: State) -> Result<()> {
        if let Err(e) = self.commit(st) {
            *st = before;
            return Err(e);
        }
        Ok(())
    }

    /// Finishes a committed plan: stops the processes it names (all at once), deletes their logs,
    /// and forgets it.
    pub(super) async fn finish(&self, op: &DeployId) {
        let doomed: Vec<String> = {
            let st = self.state.lock().await;
            st.plans
                .get(op)
                .map(|p| p.stop.iter().map(|d| d.id.clone()).collect())
                .unwrap_or_default()
        };
        self.sup.stop_many(&doomed).await;
        for id in &doomed {
            let _ = std::fs::remove_file(self.sup.log_path(id));
        }
        let mut st = self.state.lock().await;
        st.plans.remove(op);
        // Nothing anyone sees changed: no new generation.
        if let Err(e) = self.save_quiet(&st) {
            tracing::error!(%op, "cannot save the state after finishing an operation: {e}");
        }
    }

    /// Undoes a deploy's plan that did not go live: stops the instances it started, drops their
    /// records and the lane it created (unless something else is in it now), and forgets it.
    pub(super) async fn undo(&self, op: &DeployId) {
        let started: Vec<String> = {
            let st = self.state.lock().await;
            st.plans
                .get(op)
                .map(|p| p.started.clone())
                .unwrap_or_default()
        };
        // The records stay until their processes are gone: an agent that dies meanwhile leaves
        // the plan for the next one to undo.
        self.sup.stop_many(&started).await;
        for id in &started {
            let _ = std::fs::remove_file(self.sup.log_path(id));
        }
        let mut st = self.state.lock().await;
        for id in &started {
            if st
                .instances
                .get(id)
                .is_some_and(|r| r.pending.as_ref() == Some(op))
            {
                st.instances.remove(id);
            }
        }
        if let Some(plan) = st.plans.remove(op)
            && let Some(lane) = plan.created_lane
            && drop_unused_lane(&mut st, &lane)
        {
            tracing::info!(%lane, %op, "removed the lane the deploy had created");
        }
        if let Err(e) = self.commit(&mut st) {
            tracing::error!(%op, "cannot save the state after rolling back a deploy: {e}");
        }
    }

    /// At start: adopts the instances an earlier agent of this state dir started that still run
    /// and are healthy, kills every other process it left (builds, instances that do not answer,
    /// processes no record names), finishes or undoes the plans it left, and starts again the
    /// instances it did not adopt.
    pub(super) async fn recover(&self) -> Result<()> {
        let mut st = self.state.lock().await;
        // Instances an earlier agent started that still run and answer their health check are
        // adopted as they are: no request to them fails because an agent died.
        let mut adopted: HashMap<String, u32> = HashMap::new();
        for rec in st.instances.values() {
            if let (Some(pid), None) = (rec.pid, &rec.pending)
                && adoptable(pid, &rec.id, &self.dir.root)
                && probe(&rec.spec.health, rec.port).await
            {
                adopted.insert(rec.id.clone(), pid);
            }
        }
        let mut killed = Vec::new();
        // Named processes first (by pid, if the pid still is that instance), then any other
        // process carrying this state dir's markers: a restart the state had not caught up with,
        // a build of a deploy nobody waits for any more.
        let named = st.instances.values().map(|r| (r.pid, &r.id)).chain(
            st.plans
                .values()
                .flat_map(|p| p.stop.iter().map(|d| (d.pid, &d.id))),
        );
        for (pid, id) in named {
            if let Some(pid) = pid
                && adopted.get(id) != Some(&pid)
                && reclaim_stale(pid, id)
            {
                killed.push(pid);
            }
        }
        let kept: HashSet<i32> = adopted.values().map(|p| *p as i32).collect();
        let left: Vec<_> = strays(&self.dir.root)
            .into_iter()
            .filter(|s| !kept.contains(&s.pgid))
            .collect();
        if !left.is_empty() {
            tracing::warn!(
                count = left.len(),
                "killing processes an earlier agent left running"
            );
        }
        killed.extend(kill_strays(&left));
        wait_gone(&killed, RECLAIM_WAIT).await;

        let mut created = Vec::new();
        for (op, plan) in std::mem::take(&mut st.plans) {
            match plan.phase {
                PlanPhase::Commit => {
                    tracing::warn!(%op, kind = plan.kind.as_str(), "finishing an operation an earlier agent did not finish");
                    for d in &plan.stop {
                        let _ = std::fs::remove_file(self.sup.log_path(&d.id));
                    }
                }
                PlanPhase::Prepare => {
                    tracing::warn!(%op, kind = plan.kind.as_str(), "rolling back a deploy an earlier agent did not finish");
                    for id in &plan.started {
                        if st
                            .instances
                            .get(id)
                            .is_some_and(|r| r.pending.as_ref() == Some(&op))
                        {
                            st.instances.remove(id);
                            let _ = std::fs::remove_file(self.sup.log_path(id));
                        }
                    }
                    created.extend(plan.created_lane);
                }
            }
        }
        // What agents from before plans left: records of unfinished deploys, lanes they made.
        let orphans: Vec<String> = st
            .instances
            .values()
            .filter(|r| r.pending.is_some())
            .map(|r| r.id.clone())
            .collect();
        for id in orphans {
            tracing::warn!(instance = %id, "rolling back a deploy that did not finish");
            st.instances.remove(&id);
            let _ = std::fs::remove_file(self.sup.log_path(&id));
        }
        created.extend(std::mem::take(&mut st.created_by_deploy).into_keys());
        for lane in created {
            if drop_unused_lane(&mut st, &lane) {
                tracing::warn!(%lane, "removed a lane whose first deploy did not finish");
            }
        }
        for rec in st.instances.values_mut() {
            match adopted.get(&rec.id) {
                Some(pid) => {
                    tracing::info!(instance = %rec.id, pid, "adopted a healthy instance an earlier agent started");
                    rec.state = InstanceState::Healthy;
                    rec.pid = Some(*pid);
                    self.sup.adopt(rec, *pid);
                }
                None => {
                    if rec.pid.is_some() {
                        tracing::warn!(instance = %rec.id, "instance not running (or not healthy); starting it again");
                    }
                    rec.state = InstanceState::Starting;
                    rec.pid = None;
                    self.sup.start(rec);
                }
            }
        }
        self.commit(&mut st)
    }

    /// Records `change` (made to the state under the lock) as a committed plan of `kind` with
    /// nothing to stop, then forgets the plan.
    async fn state_only<T>(
        &self,
        kind: PlanKind,
        lane: Option<LaneRef>,
        change: impl FnOnce(&mut State) -> Result<T>,
    ) -> Result<T> {
        let _op = self.op_started();
        let (op, out) = {
            let mut st = self.state.lock().await;
            let before = st.clone();
            let out = match change(&mut st) {
                Ok(out) => out,
                Err(e) => {
                    *st = before;
                    return Err(e);
                }
            };
            let op = Self::plan_id(&mut st, kind);
            let mut plan = Plan::new(kind, PlanPhase::Commit, now_secs());
            plan.lane = lane;
            st.plans.insert(op.clone(), plan);
            self.record(&mut st, before)?;
            (op, out)
        };
        self.finish(&op).await;
        Ok(out)
    }

    pub(crate) async fn create_lane(&self, req: CreateLane) -> Result<Lane> {
        let lane_ref = LaneRef::Lane(req.id.clone());
        let lane = self
            .state_only(PlanKind::Create, Some(lane_ref), |st| {
                let lane = new_lane(st, &req.id, req.parent.as_ref(), &req.owner, req.ttl_secs)?;
                st.lanes.insert(lane.id.clone(), lane.clone());
                Ok(lane)
            })
            .await?;
        let parent = lane
            .parent
            .as_ref()
            .map_or(String::new(), |p| format!(" on lane {p}"));
        self.note(
            &lane.id,
            LaneEvent::Create,
            &lane.owner,
            Some(&req.owner),
            None,
            format!(
                "lane create{parent}, expiring after {}s",
                lane.expires.saturating_sub(lane.created)
            ),
        );
        Ok(lane)
    }

    pub(crate) async fn extend_lane(&self, req: ExtendLane) -> Result<Lane> {
        let lane_ref = LaneRef::Lane(req.id.clone());
        self.state_only(PlanKind::Extend, Some(lane_ref), |st| {
            let now = now_secs();
            let Some(lane) = st.lanes.get_mut(&req.id) else {
                return Err(no_lane(st, &req.id));
            };
            check_owner(lane, &req.actor, req.force)?;
            lane.expires = lane.expires.max(now).saturating_add(req.by_secs);
            let lane = lane.clone();
            // A merged lane is kept: no merged reclaim; it lives until its TTL.
            let kept = st
                .merged
                .get_mut(&req.id)
                .and_then(|m| m.reclaim_at.take())
                .is_some();
            Ok((lane, kept))
        })
        .await
        .map(|(lane, kept)| {
            self.note(
                &lane.id,
                LaneEvent::Extend,
                &lane.owner,
                Some(&req.actor),
                None,
                format!(
                    "lane extend by {}s{}; now expires at {} (Unix time){}",
                    req.by_secs,
                    forced(&lane.owner, &req.actor, req.force),
                    lane.expires,
                    if kept {
                        "; keeps the merged lane (no reclaim for being merged; it lives until \
                         its TTL)"
                    } else {
                        ""
                    }
                ),
            );
            lane
        })
    }

    pub(crate) async fn switch(&self, lane: LaneRef) -> Result<()> {
        // The lanes the switch is into and out of, with their owners.
        let (into, out_of) = self
            .state_only(PlanKind::Switch, Some(lane.clone()), |st| {
                if let LaneRef::Lane(id) = &lane
                    && !st.lanes.contains_key(id)
                {
                    return Err(no_lane(st, id));
                }
                let owner = |id: &LaneId| st.lanes.get(id).map(|l| (id.clone(), l.owner.clone()));
                let out_of = st
                    .active_lane
                    .as_ref()
                    .filter(|a| lane.lane() != Some(*a))
                    .and_then(owner);
                let into = lane.lane().and_then(owner);
                st.active_lane = lane.lane().cloned();
                Ok((into, out_of))
            })
            .await?;
        if let Some((id, owner)) = into {
            self.note(
                &id,
                LaneEvent::Switch,
                &owner,
                None,
                None,
                "lane switch: made the active lane".into(),
            );
        }
        if let Some((id, owner)) = out_of {
            self.note(
                &id,
                LaneEvent::Switch,
                &owner,
                None,
                None,
                format!("lane switch to {lane}: no longer the active lane"),
            );
        }
        Ok(())
    }

    /// Takes the lanes `ids` out of the state with their instances (a deploy under way into one
    /// included: it fails) and records one plan of `kind` to stop them. Their children move to
    /// their parents. Does not save.
    pub(super) fn take_lanes(
        st: &mut State,
        ids: &[LaneId],
        kind: PlanKind,
    ) -> (DeployId, Vec<String>) {
        let instances: Vec<String> = st
            .instances
            .values()
            .filter(|r| r.lane.lane().is_some_and(|l| ids.contains(l)))
            .map(|r| r.id.clone())
            .collect();
        for id in ids {
            let parent = st.lanes.remove(id).and_then(|l| l.parent);
            for child in st.children(id) {
                if let Some(c) = st.lanes.get_mut(&child) {
                    c.parent = parent.clone();
                }
            }
            if st.active_lane.as_ref() == Some(id) {
                st.active_lane = None;
            }
            st.merged.remove(id);
        }
        let stop = st.take_instances(&instances);
        for plan in st.plans.values_mut() {
            if plan.created_lane.as_ref().is_some_and(|l| ids.contains(l)) {
                plan.created_lane = None;
            }
        }
        let op = Self::plan_id(st, kind);
        let mut plan = Plan::new(kind, PlanPhase::Commit, now_secs());
        if let [one] = ids {
            plan.lane = Some(LaneRef::Lane(one.clone()));
        }
        plan.stop = stop;
        st.plans.insert(op.clone(), plan);
        (op, instances)
    }

    pub(crate) async fn delete_lane(&self, req: DeleteLane) -> Result<()> {
        let _op = self.op_started();
        let op = {
            let mut st = self.state.lock().await;
            let Some(lane) = st.lanes.get(&req.id) else {
                // Removed already (by another client, the Consul keeper, expiry) while its data
                // may still be going: wait for that, so the caller returns once it is gone.
                if st.lane_data.contains_key(&req.id) {
                    drop(st);
                    return self.sweep_data().await;
                }
                return Err(no_lane(&st, &req.id));
            };
            check_owner(lane, &req.actor, req.force)?;
            let children = st.children(&req.id);
            if !children.is_empty() && !req.force {
                let names: Vec<&str> = children.iter().map(LaneId::as_str).collect();
                return Err(BackendError::conflict(format!(
                    "lane `{}` has lanes stacked on it: {}",
                    req.id,
                    names.join(", ")
                ))
                .with_help(
                    "delete those first, or pass --force to move them onto this lane's parent",
                ));
            }
            let owner = lane.owner.clone();
            let stacked = children.len();
            let before = st.clone();
            // Routes go with the records: the lane's instances leave the table before they stop.
            let (op, ids) =
                Self::take_lanes(&mut st, std::slice::from_ref(&req.id), PlanKind::Delete);
            self.record(&mut st, before)?;
            let stacked = if stacked > 0 {
                format!("; {stacked} lane(s) stacked on it moved to its parent")
            } else {
                String::new()
            };
            self.note(
                &req.id,
                LaneEvent::Delete,
                &owner,
                Some(&req.actor),
                None,
                format!(
                    "lane rm{}: stopped {} instance(s){stacked}",
                    forced(&owner, &req.actor, req.force),
                    ids.len()
                ),
            );
            op
        };
        self.finish(&op).await;
        self.prune_sources().await;
        // The lane's data goes with it.
        self.sweep_data().await
    }

    /// Removes the lanes whose TTL ran out, as one plan (their processes stop all at once).
    pub(super) async fn reclaim_expired(&self) -> Result<GcReport> {
        let _op = self.op_started();
        let (op, lanes, ids) = {
            let mut st = self.state.lock().await;
            let now = now_secs();
            // A lane a deploy under way created is that deploy's to keep or undo.
            let making: HashSet<&LaneId> = st
                .plans
                .values()
                .filter_map(|p| p.created_lane.as_ref())
                .collect();
            let lanes: Vec<LaneId> = st
                .lanes
                .values()
                .filter(|l| l.is_expired(now) && !making.contains(&l.id))
                .map(|l| l.id.clone())
                .collect();
            if lanes.is_empty() {
                return Ok(GcReport {
                    lanes_removed: vec![],
                    instances_removed: vec![],
                });
            }
            for lane in &lanes {
                tracing::info!(%lane, "lane expired; reclaiming it");
            }
            let owners: Vec<(LaneId, String, u64)> = lanes
                .iter()
                .filter_map(|id| st.lanes.get(id))
                .map(|l| (l.id.clone(), l.owner.clone(), l.expires))
                .collect();
            let before = st.clone();
            let (op, ids) = Self::take_lanes(&mut st, &lanes, PlanKind::Expire);
            self.record(&mut st, before)?;
            for (id, owner, expires) in owners {
                self.note(
                    &id,
                    LaneEvent::Reclaim,
                    &owner,
                    None,
                    None,
                    format!(
                        "expired: its TTL ran out at {expires} (Unix time); reclaimed with its \
                         instances"
                    ),
                );
            }
            (op, lanes, ids)
        };
        self.finish(&op).await;
        self.prune_sources().await;
        if let Err(e) = self.sweep_data().await {
            tracing::warn!(error = %e, "expired lanes' data not removed yet");
        }
        Ok(GcReport {
            lanes_removed: lanes,
            instances_removed: ids.into_iter().map(InstanceId::new).collect(),
        })
    }

    pub(crate) async fn assign(&self, req: AssignRequest) -> Result<()> {
        let _op = self.op_started();
        let op = {
            let mut st = self.state.lock().await;
            let from = st
                .lanes
                .get(&req.from)
                .ok_or_else(|| no_lane(&st, &req.from))?;
            check_owner(from, &req.actor, req.force)?;
            let to = st.lanes.get(&req.to).ok_or_else(|| no_lane(&st, &req.to))?;
            check_owner(to, &req.actor, req.force)?;
            if req.from == req.to {
                return Err(BackendError::invalid("source and target lane are the same"));
            }
            let Some(version) = from.services.get(&req.service).cloned() else {
                return Err(BackendError::not_found(format!(
                    "lane `{}` has no version of {}",
                    req.from, req.service
                )));
            };
            if to.services.contains_key(&req.service) && !req.force {
                return Err(BackendError::conflict(format!(
                    "lane `{}` already has a version of {}",
                    req.to, req.service
                ))
                .with_help("remove it first, or pass --force to replace it"));
            }
            let before = st.clone();
            let from_ref = LaneRef::Lane(req.from.clone());
            let to_ref = LaneRef::Lane(req.to.clone());
            // Live instances only: a deploy under way keeps its own.
            let replaced: Vec<String> = st
                .instances_of(&req.service, &to_ref)
                .filter(|r| r.pending.is_none())
                .map(|r| r.id.clone())
                .collect();
            let stop = st.take_instances(&replaced);
            for rec in st.instances.values_mut() {
                if rec.service == req.service && rec.lane == from_ref && rec.pending.is_none() {
                    rec.lane = to_ref.clone();
                }
            }
            if let Some(l) = st.lanes.get_mut(&req.from) {
                l.services.remove(&req.service);
            }
            if let Some(l) = st.lanes.get_mut(&req.to) {
                l.services.insert(req.service.clone(), version.clone());
            }
            // Both lanes changed: the next merge check decides about them again.
            st.merged.remove(&req.from);
            st.merged.remove(&req.to);
            let op = Self::plan_id(&mut st, PlanKind::Assign);
            let mut plan = Plan::new(PlanKind::Assign, PlanPhase::Commit, now_secs());
            plan.lane = Some(to_ref);
            plan.service = Some(req.service.clone());
            plan.stop = stop;
            st.plans.insert(op.clone(), plan);
            self.record(&mut st, before)?;
            let owner = |id: &LaneId| st.lanes.get(id).map_or(String::new(), |l| l.owner.clone());
            let (svc, v) = (&req.service, &version.version);
            let from_owner = owner(&req.from);
            self.note(
                &req.from,
                LaneEvent::Assign,
                &from_owner,
                Some(&req.actor),
                Some(svc),
                format!(
                    "lane assign: moved {svc} {v} to lane {}{}",
                    req.to,
                    forced(&from_owner, &req.actor, req.force)
                ),
            );
            let to_owner = owner(&req.to);
            self.note(
                &req.to,
                LaneEvent::Assign,
                &to_owner,
                Some(&req.actor),
                Some(svc),
                format!(
                    "lane assign: got {svc} {v} from lane {}{}",
                    req.from,
                    forced(&to_owner, &req.actor, req.force)
                ),
            );
            op
        };
        self.finish(&op).await;
        self.prune_sources().await;
        Ok(())
    }

    /// Reclaims expired lanes, instances no lane or deploy holds, processes of this state dir no
    /// instance accounts for, and logs of nothing.
    pub(crate) async fn gc(&self) -> Result<GcReport> {
        let _op = self.op_started();
        let mut report = self.reclaim_expired().await?;
        // Data of lanes gone earlier whose teardown failed then (a server was down).
        if let Err(e) = self.sweep_data().await {
            tracing::warn!(error = %e, "lanes' data not removed yet");
        }
        let orphans = {
            let mut st = self.state.lock().await;
            let started: HashSet<&String> =
                st.plans.values().flat_map(|p| p.started.iter()).collect();
            let orphans: Vec<String> = st
                .instances
                .values()
                .filter(|r| match &r.pending {
                    None => r.lane.lane().is_some_and(|l| !st.lanes.contains_key(l)),
                    Some(_) => !started.contains(&r.id),
                })
                .map(|r| r.id.clone())
                .collect();
            if orphans.is_empty() {
                None
            } else {
                let before = st.clone();
                let stop = st.take_instances(&orphans);
                let op = Self::plan_id(&mut st, PlanKind::Gc);
                let mut plan = Plan::new(PlanKind::Gc, PlanPhase::Commit, now_secs());
                plan.stop = stop;
                st.plans.insert(op.clone(), plan);
                self.record(&mut st, before)?;
                Some((op, orphans))
            }
        };
        if let Some((op, ids)) = orphans {
            self.finish(&op).await;
            report
                .instances_removed
                .extend(ids.into_iter().map(InstanceId::new));
        }
        // Processes of this state dir's instances that this agent neither runs nor stops.
        let unknown: Vec<_> = strays(&self.dir.root)
            .into_iter()
            .filter(|s| s.instance.as_deref().is_some_and(|id| !self.sup.knows(id)))
            .collect();
        if !unknown.is_empty() {
            tracing::warn!(
                count = unknown.len(),
                "killing instance processes nothing accounts for"
            );
            wait_gone(&kill_strays(&unknown), RECLAIM_WAIT).await;
            let mut ids: Vec<String> = unknown.into_iter().filter_map(|s| s.instance).collect();
            ids.sort();
            ids.dedup();
            report
                .instances_removed
                .extend(ids.into_iter().map(InstanceId::new));
        }
        // Logs of nothing: neither an instance nor a process some plan is stopping.
        let live: HashSet<std::path::PathBuf> = {
            let st = self.state.lock().await;
            st.instances
                .keys()
                .chain(st.plans.values().flat_map(|p| p.stop.iter().map(|d| &d.id)))
                .map(|id| self.sup.log_path(id))
                .collect()
        };
        if let Ok(entries) = std::fs::read_dir(self.dir.logs()) {
            for e in entries.flatten() {
                if !live.contains(&e.path()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        self.prune_sources().await;
        Ok(report)
    }
}

/// ` (--force, as <actor>)` when someone other than the owner made a change, else nothing.
fn forced(owner: &str, actor: &str, force: bool) -> String {
    if force && owner != actor {
        format!(" (--force by {actor}, not the owner)")
    } else {
        String::new()
    }
}

/// Removes `lane` when no instance is in it and no lane is stacked on it (it was made by a
/// deploy that did not complete). When a deploy under way has an instance in it, that deploy's
/// plan takes the lane over (to drop it in turn if it fails). True when removed.
pub(super) fn drop_unused_lane(st: &mut State, lane: &LaneId) -> bool {
    if !st.lanes.contains_key(lane) || !st.children(lane).is_empty() {
        return false;
    }
    let inside: Vec<(String, Option<DeployId>)> = st
        .instances
        .values()
        .filter(|r| r.lane.lane() == Some(lane))
        .map(|r| (r.id.clone(), r.pending.clone()))
        .collect();
    if inside.is_empty() {
        st.lanes.remove(lane);
        if st.active_lane.as_ref() == Some(lane) {
            st.active_lane = None;
        }
        return true;
    }
    if inside.iter().all(|(_, pending)| pending.is_some()) {
        // Only deploys under way are in it: the first of them inherits the lane.
        if let Some((_, Some(heir))) = inside.first()
            && let Some(plan) = st.plans.get_mut(heir)
            && plan.created_lane.is_none()
        {
            plan.created_lane = Some(lane.clone());
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{InstanceRecord, RunSpec};

    fn lane(st: &mut State, id: &str, parent: Option<&str>) -> LaneId {
        let id: LaneId = id.parse().unwrap();
        let parent = parent.map(|p| p.parse().unwrap());
        st.lanes.insert(
            id.clone(),
            Lane::new(id.clone(), parent, "me", 1, Duration::from_secs(60)),
        );
        id
    }

    fn pending(st: &mut State, id: &str, lane: &LaneId, op: &DeployId) {
        st.instances.insert(
            id.into(),
            InstanceRecord {
                id: id.into(),
                service: "demo.b".parse().unwrap(),
                lane: LaneRef::Lane(lane.clone()),
                port: 1,
                spec: RunSpec {
                    command: "true".into(),
                    cwd: "/".into(),
                    env: Default::default(),
                    health: lane_core::manifest::HealthCheck::Tcp,
                    health_timeout_ms: 1,
                },
                state: InstanceState::Starting,
                pid: None,
                restarts: 0,
                version: None,
                pending: Some(op.clone()),
                source: None,
                protocol: Default::default(),
                repo: None,
                had_work: false,
            },
        );
    }

    #[test]
    fn a_lane_a_failed_deploy_made_goes_unless_something_else_is_in_it() {
        let mut st = State::default();
        let empty = lane(&mut st, "empty", None);
        assert!(drop_unused_lane(&mut st, &empty));
        assert!(!st.lanes.contains_key(&empty));

        // Another deploy under way into it inherits it, to drop it in turn if it fails.
        let shared = lane(&mut st, "shared", None);
        let other = DeployId::from("deploy-9");
        st.plans.insert(
            other.clone(),
            Plan::new(PlanKind::Deploy, PlanPhase::Prepare, 1),
        );
        pending(&mut st, "shared/demo.b#1", &shared, &other);
        assert!(!drop_unused_lane(&mut st, &shared));
        assert_eq!(st.plans[&other].created_lane.as_ref(), Some(&shared));

        // A lane stacked on it keeps it.
        let base = lane(&mut st, "base", None);
        lane(&mut st, "child", Some("base"));
        assert!(!drop_unused_lane(&mut st, &base));
        assert!(st.lanes.contains_key(&base));
    }
}
