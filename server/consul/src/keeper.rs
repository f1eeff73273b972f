//! The keeper: what makes the machine that runs a personal version answer for it, whichever
//! machine changed the lanes. It runs inside this machine's `lane agent` (the supervisor that runs
//! the versions), follows the lane documents (`<prefix>-lane/lanes/`) with a blocking query, and
//! on every change compares them with the `<prefix>-lane.*` services registered through this
//! machine's Consul agent (`GET /v1/agent/services`):
//!
//! - an instance whose lane has no document any more (`lane rm` or `lane gc` ran anywhere, or the
//!   lane expired and was reclaimed) is deregistered from this agent, its registration record is
//!   deleted, and this machine's versions of that lane are stopped (unless it was assigned to
//!   another lane first, below: then it moves);
//! - an instance whose lane document no longer lists its service, while another lane's document
//!   lists the same version (commit, branch, owner) and that lane has no instance of the service
//!   yet, was assigned there (`lane assign` on any machine): the supervisor relabels the process,
//!   and it is registered again as `<name>-<to>` with `lane=<to>` (same address) before the old
//!   registration goes.
//!
//! `lane deploy` with the consul backend leaves the connection settings in
//! `<LANE_HOME>/consul/<n>.json` (owner-only, like the rest of the state dir; it holds the token
//! when one is set), and the agent keeps one keeper per settings file found there.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lane_api::{AssignRequest, Backend, CreateLane, DeleteLane, ErrorCode, Result};
use lane_core::naming::consul_lane_key;
use lane_core::{Lane, LaneId, ServiceId};
use serde::{Deserialize, Serialize};

use crate::client::{AgentService, Blocking, Client, Registration};
use crate::config::Settings;
use crate::watch::{MIN_INTERVAL, backoff, jittered, next_index};

/// How long one blocking read of the lane documents waits; every answer (a change, or the end of
/// the wait) compares them with this agent's registrations again.
const WAIT: Duration = Duration::from_secs(30);
/// How often the agent looks for new settings files.
const RESCAN: Duration = Duration::from_secs(1);

/// The connection settings a keeper needs, as kept in the state dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Saved {
    base_url: String,
    token: Option<String>,
    ca_cert: Option<PathBuf>,
    datacenter: Option<String>,
    namespace: Option<String>,
    prefix: String,
}

impl Saved {
    fn of(s: &Settings) -> Saved {
        Saved {
            base_url: s.base_url.clone(),
            token: s.token.clone(),
            ca_cert: s.ca_cert.clone(),
            datacenter: s.datacenter.clone(),
            namespace: s.namespace.clone(),
            prefix: s.prefix.clone(),
        }
    }

    fn settings(self) -> Settings {
        Settings {
            base_url: self.base_url,
            addr_source: "CONSUL_HTTP_ADDR (as `lane deploy` saw it)",
            token: self.token,
            ca_cert: self.ca_cert,
            datacenter: self.datacenter,
            namespace: self.namespace,
            prefix: self.prefix,
        }
    }

    /// A stable file name for these settings (the same Consul, datacenter, namespace and prefix
    /// share one keeper; a new token replaces the old one).
    fn file_name(&self) -> String {
        let key = format!(
            "{}|{}|{}|{}",
            self.base_url,
            self.datacenter.as_deref().unwrap_or(""),
            self.namespace.as_deref().unwrap_or(""),
            self.prefix
        );
        let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{h:016x}.json")
    }
}

fn dir_of(home: &Path) -> PathBuf {
    home.join("consul")
}

/// Leaves `settings` in `<home>/consul/` for the agent's keeper (owner-only: it may hold the
/// token). Called by `lane deploy` before it registers anything.
pub fn remember(home: &Path, settings: &Settings) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = dir_of(home);
    std::fs::create_dir_all(&dir)?;
    let saved = Saved::of(settings);
    let path = dir.join(saved.file_name());
    let text = serde_json::to_vec_pretty(&saved).map_err(std::io::Error::other)?;
    if std::fs::read(&path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    let tmp = dir.join(format!(".{}.tmp", saved.file_name()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&text)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// Runs a keeper for every settings file in `<home>/consul/` (looking again every second, so a
/// deploy into a new datacenter is followed at once), with `local` (never starting anything) to
/// stop and relabel this machine's versions. Runs until dropped.
pub async fn run_all(home: PathBuf, local: Arc<dyn Backend>) {
    let mut running: HashMap<PathBuf, (Saved, tokio::task::JoinHandle<()>)> = HashMap::new();
    loop {
        if let Ok(entries) = std::fs::read_dir(dir_of(&home)) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let Some(saved) = std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Saved>(&b).ok())
                else {
                    continue;
                };
                if running.get(&path).is_some_and(|(s, _)| s == &saved) {
                    continue;
                }
                if let Some((_, old)) = running.remove(&path) {
                    old.abort();
                }
                let settings = saved.clone().settings();
                match Client::new(settings) {
                    Ok(client) => {
                        tracing::info!(
                            "following the lanes in Consul at {} (prefix {})",
                            saved.base_url,
                            saved.prefix
                        );
                        let task = tokio::spawn(keep(client, local.clone()));
                        running.insert(path, (saved, task));
                    }
                    Err(e) => tracing::warn!("{}: {}", path.display(), e.message),
                }
            }
        }
        tokio::time::sleep(RESCAN).await;
    }
}

/// Follows the lane documents of `client`'s Consul and reconciles this agent's registrations
/// with them on every answer. Runs until dropped.
pub async fn keep(client: Client, local: Arc<dyn Backend>) {
    let prefix = format!("{}-lane/lanes/", client.settings().prefix);
    let mut index = 0u64;
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let blocking = (index > 0).then(|| Blocking {
            index,
            wait: jittered(WAIT),
        });
        let outcome = match client.kv_list(&prefix, blocking).await {
            Ok((pairs, new)) => {
                index = next_index(index, new);
                let lanes: BTreeMap<LaneId, Lane> = pairs
                    .iter()
                    .filter_map(|p| serde_json::from_slice::<Lane>(&p.value).ok())
                    .map(|l| (l.id.clone(), l))
                    .collect();
                reconcile(&client, local.as_ref(), &lanes).await
            }
            Err(e) => {
                index = 0;
                Err(e)
            }
        };
        match outcome {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!("keeping this machine's Consul registrations: {}", e.message);
                }
                // Read everything again after the pause.
                index = 0;
                tokio::time::sleep(backoff(failures)).await;
            }
        }
        let spent = started.elapsed();
        if spent < MIN_INTERVAL {
            tokio::time::sleep(MIN_INTERVAL - spent).await;
        }
    }
}

/// One comparison of this agent's lane registrations with the lane documents `lanes`.
pub async fn reconcile(
    client: &Client,
    local: &dyn Backend,
    lanes: &BTreeMap<LaneId, Lane>,
) -> Result<()> {
    let prefix = client.settings().prefix.clone();
    let lane_prefix = format!("{prefix}-lane.");
    let own = client.agent_services().await?;
    for (id, svc) in &own {
        let Some(service) = svc
            .service
            .strip_prefix(&lane_prefix)
            .and_then(|s| s.parse::<ServiceId>().ok())
        else {
            continue;
        };
        let Some(lane_id) = lane_of(svc) else {
            continue;
        };
        match lanes.get(&lane_id) {
            None => {
                // The list may be older than a lane created meanwhile: read its key once more.
                if client
                    .kv_get(&consul_lane_key(&prefix, &lane_id))
                    .await?
                    .0
                    .is_some()
                {
                    continue;
                }
                // Assigned elsewhere before its lane went (the move was not carried out then):
                // it moves rather than stops.
                if let Some(to) = assigned_to(client, svc, &service, &lane_id, lanes).await? {
                    move_instance(client, local, id, &service, &lane_id, to).await?;
                    continue;
                }
                client.deregister(id).await?;
                client.kv_delete(&registration_key(&prefix, id)).await?;
                stop_local(local, &lane_id).await;
                tracing::info!("lane {lane_id} is gone from Consul: deregistered {id}");
            }
            Some(lane) if lane.services.contains_key(&service) => {}
            Some(_) => {
                // Not (or no longer) in its lane's document: assigned elsewhere, or a deploy
                // that registered but has not written the document yet (then nothing matches).
                let Some(to) = assigned_to(client, svc, &service, &lane_id, lanes).await? else {
                    continue;
                };
                move_instance(client, local, id, &service, &lane_id, to).await?;
            }
        }
    }
    Ok(())
}

fn lane_of(svc: &AgentService) -> Option<LaneId> {
    svc.meta
        .as_ref()
        .and_then(|m| m.get("lane").cloned())
        .or_else(|| tag(svc, "lane").map(str::to_owned))
        .and_then(|l| l.parse().ok())
}

fn tag<'a>(svc: &'a AgentService, name: &str) -> Option<&'a str> {
    svc.tags
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find_map(|t| t.strip_prefix(name)?.strip_prefix('='))
}

/// The lane the version of `svc` was assigned to: another lane whose document lists `service`
/// with the same commit, branch and owner, and which has no registered instance of it yet.
async fn assigned_to<'a>(
    client: &Client,
    svc: &AgentService,
    service: &ServiceId,
    from: &LaneId,
    lanes: &'a BTreeMap<LaneId, Lane>,
) -> Result<Option<&'a Lane>> {
    let (commit, branch, owner) = (tag(svc, "version"), tag(svc, "branch"), tag(svc, "owner"));
    for lane in lanes.values().filter(|l| &l.id != from) {
        let Some(v) = lane.services.get(service) else {
            continue;
        };
        if Some(v.commit.as_str()) != commit
            || Some(v.branch.as_str()) != branch
            || Some(v.owner.as_str()) != owner
        {
            continue;
        }
        let lane_tag = format!("lane={}", lane.id);
        let (there, _) = client
            .health_service(&svc.service, false, &[&lane_tag], None)
            .await?;
        if there.is_empty() {
            return Ok(Some(lane));
        }
    }
    Ok(None)
}

/// Moves this agent's instance `id` of `service` from lane `from` to lane `to`: the supervisor
/// relabels the process, the registration is made again under `to`, then the old one goes.
async fn move_instance(
    client: &Client,
    local: &dyn Backend,
    id: &str,
    service: &ServiceId,
    from: &LaneId,
    to: &Lane,
) -> Result<()> {
    let prefix = client.settings().prefix.clone();
    let (pair, _) = client.kv_get(&registration_key(&prefix, id)).await?;
    let Some(old) = pair.and_then(|p| serde_json::from_slice::<Registration>(&p.value).ok()) else {
        tracing::warn!(
            "{id} was assigned to lane {} but its registration record is missing; deploy it \
             there instead",
            to.id
        );
        return Ok(());
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let created = local
        .create_lane(CreateLane {
            id: to.id.clone(),
            parent: None,
            ttl_secs: Some(to.expires.saturating_sub(now).max(60)),
            owner: to.owner.clone(),
        })
        .await;
    match created {
        Ok(_) => {}
        Err(e) if e.code == ErrorCode::Conflict => {}
        Err(e) => return Err(e),
    }
    let relabel = local
        .assign(AssignRequest {
            service: service.clone(),
            from: from.clone(),
            to: to.id.clone(),
            actor: to.owner.clone(),
            force: true,
        })
        .await;
    if let Err(e) = relabel {
        tracing::warn!(
            "{id} was assigned to lane {}, but this machine's supervisor could not move it: {}",
            to.id,
            e.message
        );
        return Ok(());
    }
    let reg = retagged(&old, &to.id);
    client.register(&reg).await?;
    let stored = serde_json::to_vec(&reg)
        .map_err(|e| lane_api::BackendError::internal(format!("a registration: {e}")))?;
    client
        .kv_put(&registration_key(&prefix, &reg.id), stored)
        .await?;
    client.deregister(&old.id).await?;
    client
        .kv_delete(&registration_key(&prefix, &old.id))
        .await?;
    tracing::info!(
        "{} moved from lane {from} to lane {}: registered as {}",
        old.id,
        to.id,
        reg.id
    );
    Ok(())
}

/// `old` registered again under lane `to`: new id, `lane=` tag and `lane` meta.
pub fn retagged(old: &Registration, to: &LaneId) -> Registration {
    let mut reg = old.clone();
    reg.id = format!("{}-{to}", old.name);
    reg.tags = old
        .tags
        .iter()
        .map(|t| {
            if t.starts_with("lane=") {
                format!("lane={to}")
            } else {
                t.clone()
            }
        })
        .collect();
    reg.meta.insert("lane".into(), to.to_string());
    reg
}

/// Where the registration of instance `id` is kept: `<prefix>-lane/registrations/<id>`.
pub fn registration_key(prefix: &str, id: &str) -> String {
    format!("{prefix}-lane/registrations/{id}")
}

async fn stop_local(local: &dyn Backend, lane: &LaneId) {
    let req = DeleteLane {
        id: lane.clone(),
        actor: String::new(),
        force: true,
    };
    match local.delete_lane(req).await {
        Ok(()) => tracing::info!("stopped this machine's versions of lane {lane}"),
        Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::Unavailable) => {}
        Err(e) => tracing::warn!("could not stop this machine's versions of lane {lane}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_files_are_named_by_where_they_point() {
        let s = |url: &str, prefix: &str| Saved {
            base_url: url.into(),
            token: None,
            ca_cert: None,
            datacenter: None,
            namespace: None,
            prefix: prefix.into(),
        };
        assert_eq!(
            s("http://a:8500", "gaia").file_name(),
            s("http://a:8500", "gaia").file_name()
        );
        assert_ne!(
            s("http://a:8500", "gaia").file_name(),
            s("http://b:8500", "gaia").file_name()
        );
        let mut t = s("http://a:8500", "gaia");
        t.token = Some("x".into());
        assert_eq!(t.file_name(), s("http://a:8500", "gaia").file_name());
    }
}
