//! Following Consul with blocking queries, for the router (`lane router --registry consul`): the
//! lane documents (`<prefix>-lane/lanes/`), the catalog's service names, and the health of every
//! `<prefix>.<app>.<proc>` and `<prefix>-lane.<app>.<proc>` service, each watched with its own
//! blocking query. Every answer that changes something rebuilds the routing table
//! ([`lane_core::RoutingTable::from_lanes`]) with only passing instances healthy.
//!
//! The blocking-query rules Consul documents for clients:
//! - the next query's `index` is the last `X-Consul-Index`; when an index goes backwards (a
//!   restored or rebuilt datacenter) it is reset to 0 (one plain read, then blocking again), and an
//!   index of 0 is taken as 1, so a query never spins without blocking;
//! - `wait` carries up to wait/16 of random jitter, so many watchers do not wake together;
//! - successive queries of one watch are at least [`MIN_INTERVAL`] apart (rate limit);
//! - errors back off exponentially with jitter, from 100 ms to 10 s.
//!
//! When Consul cannot be reached the watchers keep the last table (fail static, as Envoy does)
//! and [`SourceHealth`] says so, until an answer comes again.
//!
//! A registration whose address (`Service.Address`, else `Node.Address`) is a DNS name is
//! resolved here, off the routing path: with tokio's resolver (the system's), each name at most
//! once per [`NAME_TTL`] (and again every [`NAME_TTL`] while it is in use), an IPv4 address
//! preferred. Until a name is resolved, and while it does not resolve, its instances are left
//! out of the table; [`follow_reporting`] reports such names (the router shows them in
//! `/healthz` and `/metrics`) and the log says when a name stops or starts resolving.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lane_core::{Endpoint, Lane, LaneId, LaneRef, RoutingTable, ServiceId};
use tokio::sync::mpsc;

use crate::client::{Blocking, Client, ServiceEntry};

/// The shortest time between two queries of one watch.
pub const MIN_INTERVAL: Duration = Duration::from_millis(20);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long a resolved DNS name of a registration is used before it is resolved again.
pub const NAME_TTL: Duration = Duration::from_secs(10);
/// How long one resolution may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The next `index` to block on after an answer with `new`, the last one being `old`.
pub fn next_index(old: u64, new: u64) -> u64 {
    if new < old {
        // The index went backwards: start again.
        0
    } else {
        new.max(1)
    }
}

/// `wait` plus up to wait/16 of random jitter.
pub fn jittered(wait: Duration) -> Duration {
    wait + wait.mul_f64(fastrand::f64() / 16.0)
}

/// The backoff after `failures` errors in a row (with jitter).
pub fn backoff(failures: u32) -> Duration {
    let base = BACKOFF_MIN
        .saturating_mul(1u32 << failures.min(8))
        .min(BACKOFF_MAX);
    base.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// Whether the registry answers, for `/healthz`, `/metrics` and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceHealth {
    /// Following Consul.
    Ok,
    /// Consul does not answer: the last table stays in force.
    Stale { since: Instant, error: String },
}

/// What the watchers tell the table builder.
enum Event {
    Lanes(Vec<Lane>),
    Services(Vec<String>),
    Health(String, Vec<ServiceEntry>),
    Gone(String),
    Failed(String),
    Answered,
    /// A DNS name resolved (or not).
    Resolved(String, std::result::Result<IpAddr, String>),
    /// Time to look at the names again.
    Tick,
}

/// A registration address that does not resolve: `<instance id>: <name>: <why>`.
pub type Unresolved = Vec<String>;

/// The DNS names of registrations, as last resolved.
#[derive(Default)]
struct Names {
    known: HashMap<String, (std::result::Result<IpAddr, String>, Instant)>,
    pending: HashSet<String>,
}

impl Names {
    fn ip(&self, host: &str) -> Option<IpAddr> {
        self.known
            .get(host)
            .and_then(|(r, _)| r.as_ref().ok().copied())
    }

    /// Starts resolving every name of `entries` that is not known or is older than [`NAME_TTL`].
    fn refresh(
        &mut self,
        entries: &BTreeMap<String, Vec<ServiceEntry>>,
        tasks: &mut tokio::task::JoinSet<()>,
        tx: &mpsc::UnboundedSender<Event>,
    ) {
        let mut used = HashSet::new();
        for e in entries.values().flatten() {
            let host = e.host();
            if host.is_empty() || is_ip(host) {
                continue;
            }
            used.insert(host.to_owned());
            let fresh = self
                .known
                .get(host)
                .is_some_and(|(_, at)| at.elapsed() < NAME_TTL);
            if fresh || self.pending.contains(host) {
                continue;
            }
            self.pending.insert(host.to_owned());
            let (host, port, tx) = (host.to_owned(), e.service.port, tx.clone());
            tasks.spawn(async move {
                let result = resolve(&host, port).await;
                let _ = tx.send(Event::Resolved(host, result));
            });
        }
        // Names no registration uses any more are forgotten.
        self.known.retain(|h, _| used.contains(h));
    }

    /// The instances whose name does not resolve.
    fn unresolved(&self, entries: &BTreeMap<String, Vec<ServiceEntry>>) -> Unresolved {
        let mut out: Unresolved = entries
            .values()
            .flatten()
            .filter_map(|e| match self.known.get(e.host()) {
                Some((Err(why), _)) => Some(format!("{}: {}: {why}", e.service.id, e.host())),
                _ => None,
            })
            .collect();
        out.sort();
        out
    }
}

fn is_ip(host: &str) -> bool {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok()
}

/// One resolution of `host` (tokio's resolver, the system's), an IPv4 address preferred.
async fn resolve(host: &str, port: u16) -> std::result::Result<IpAddr, String> {
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(format!("no answer within {RESOLVE_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            addrs
                .iter()
                .find(|a| a.is_ipv4())
                .or(addrs.first())
                .map(|a| a.ip())
                .ok_or_else(|| "the name has no address".to_owned())
        }
    }
}

/// Follows Consul and calls `on_table` with every new table and `on_health` on every change of
/// [`SourceHealth`]. Runs until the returned future is dropped.
pub async fn follow(
    client: Client,
    wait: Duration,
    on_table: impl FnMut(RoutingTable<SocketAddr>) + Send,
    on_health: impl FnMut(SourceHealth) + Send,
) {
    follow_reporting(client, wait, on_table, on_health, |_| {}).await
}

/// [`follow`], and `on_unresolved` with every change of the registrations whose DNS name does not
/// resolve (left out of the table).
pub async fn follow_reporting(
    client: Client,
    wait: Duration,
    mut on_table: impl FnMut(RoutingTable<SocketAddr>) + Send,
    mut on_health: impl FnMut(SourceHealth) + Send,
    mut on_unresolved: impl FnMut(Unresolved) + Send,
) {
    let prefix = client.settings().prefix.clone();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(watch_lanes(client.clone(), wait, tx.clone()));
    tasks.spawn(watch_services(
        client.clone(),
        prefix.clone(),
        wait,
        tx.clone(),
    ));
    let mut health_tasks: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    let mut lanes: Vec<Lane> = Vec::new();
    let mut entries: BTreeMap<String, Vec<ServiceEntry>> = BTreeMap::new();
    let mut generation = 0u64;
    let mut health = SourceHealth::Ok;
    let mut lanes_known = false;
    let mut names = Names::default();
    let mut unresolved = Unresolved::new();
    {
        let tx = tx.clone();
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(NAME_TTL / 2).await;
                if tx.send(Event::Tick).is_err() {
                    return;
                }
            }
        });
    }
    while let Some(event) = rx.recv().await {
        let mut rebuild = true;
        match event {
            Event::Resolved(host, result) => {
                names.pending.remove(&host);
                let before = names.known.get(&host).map(|(r, _)| r.clone());
                match (&before, &result) {
                    (Some(Err(old)), Err(why)) if old == why => {}
                    (_, Err(why)) => {
                        tracing::warn!(
                            "consul: the address {host} of a registration does not resolve \
                             ({why}); its instances are left out"
                        );
                    }
                    (Some(Err(_)), Ok(ip)) => {
                        tracing::warn!("consul: {host} resolves again ({ip})");
                    }
                    _ => {}
                }
                rebuild = before.as_ref() != Some(&result);
                names.known.insert(host, (result, Instant::now()));
            }
            Event::Tick => {
                rebuild = false;
            }
            Event::Lanes(l) => {
                lanes = l;
                lanes_known = true;
            }
            Event::Services(names) => {
                for name in &names {
                    if !health_tasks.contains_key(name) {
                        let h = tasks.spawn(watch_health(
                            client.clone(),
                            name.clone(),
                            wait,
                            tx.clone(),
                        ));
                        health_tasks.insert(name.clone(), h);
                    }
                }
                let gone: Vec<String> = health_tasks
                    .keys()
                    .filter(|n| !names.contains(n))
                    .cloned()
                    .collect();
                for name in gone {
                    if let Some(h) = health_tasks.remove(&name) {
                        h.abort();
                    }
                    entries.remove(&name);
                }
            }
            Event::Health(name, list) => {
                if !health_tasks.contains_key(&name) {
                    continue;
                }
                entries.insert(name, list);
            }
            Event::Gone(name) => {
                entries.remove(&name);
            }
            Event::Failed(error) => {
                rebuild = false;
                if health == SourceHealth::Ok {
                    tracing::warn!(
                        "Consul does not answer ({error}); serving the last known table until it \
                         does"
                    );
                    health = SourceHealth::Stale {
                        since: Instant::now(),
                        error,
                    };
                    on_health(health.clone());
                }
            }
            Event::Answered => {
                rebuild = false;
                if health != SourceHealth::Ok {
                    tracing::warn!("Consul answers again; following it");
                    health = SourceHealth::Ok;
                    on_health(health.clone());
                }
            }
        }
        names.refresh(&entries, &mut tasks, &tx);
        let now_unresolved = names.unresolved(&entries);
        if now_unresolved != unresolved {
            unresolved = now_unresolved;
            on_unresolved(unresolved.clone());
        }
        if rebuild && lanes_known {
            generation += 1;
            on_table(table_resolving(
                &prefix,
                &lanes,
                &entries,
                generation,
                &|h| names.ip(h),
            ));
        }
    }
}

/// The routing table of the lane documents and the services' instances: baseline instances from
/// `<prefix>.<app>.<proc>`, lane instances from `<prefix>-lane.<app>.<proc>` by their `lane=` tag
/// (of lanes that have a document); passing instances are healthy, any other is not. Addresses
/// that are no IP address are left out (the router connects to socket addresses); see
/// [`table_resolving`] for DNS names.
pub fn table(
    prefix: &str,
    lanes: &[Lane],
    entries: &BTreeMap<String, Vec<ServiceEntry>>,
    generation: u64,
) -> RoutingTable<SocketAddr> {
    table_resolving(prefix, lanes, entries, generation, &|_| None)
}

/// [`table`], with the addresses that are DNS names taken from `resolved` (a name it has no
/// address for is left out).
pub fn table_resolving(
    prefix: &str,
    lanes: &[Lane],
    entries: &BTreeMap<String, Vec<ServiceEntry>>,
    generation: u64,
    resolved: &dyn Fn(&str) -> Option<IpAddr>,
) -> RoutingTable<SocketAddr> {
    let lane_prefix = format!("{prefix}-lane.");
    let base_prefix = format!("{prefix}.");
    let mut endpoints = Vec::new();
    for (name, list) in entries {
        let (service, in_lane) = if let Some(s) = name.strip_prefix(&lane_prefix) {
            (s, true)
        } else if let Some(s) = name.strip_prefix(&base_prefix) {
            (s, false)
        } else {
            continue;
        };
        let Ok(service) = service.parse::<ServiceId>() else {
            continue;
        };
        for e in list {
            let lane = if in_lane {
                let Some(id) = e.tag("lane").and_then(|l| l.parse::<LaneId>().ok()) else {
                    continue;
                };
                if !lanes.iter().any(|l| l.id == id) {
                    continue;
                }
                LaneRef::Lane(id)
            } else {
                LaneRef::Baseline
            };
            let target = match e.address().parse::<SocketAddr>() {
                Ok(t) => t,
                Err(_) => match resolved(e.host()) {
                    Some(ip) => SocketAddr::new(ip, e.service.port),
                    None => {
                        tracing::debug!(
                            "consul: {} has no address yet ({})",
                            e.service.id,
                            e.address()
                        );
                        continue;
                    }
                },
            };
            endpoints.push(Endpoint {
                service: service.clone(),
                lane,
                healthy: e.status() == "passing",
                target,
            });
        }
    }
    RoutingTable::from_lanes(lanes.iter(), endpoints, generation)
}

/// Runs one blocking watch: `query(index)` again and again, following the index rules, backing
/// off on errors. `deliver` gets every answer whose index moved.
async fn watch<T, F, Fut>(
    tx: mpsc::UnboundedSender<Event>,
    mut query: F,
    mut deliver: impl FnMut(T) -> Option<Event>,
) where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = lane_api::Result<(T, u64)>>,
{
    let mut index = 0u64;
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        match query(index).await {
            Ok((value, new)) => {
                failures = 0;
                if tx.send(Event::Answered).is_err() {
                    return;
                }
                if (new != index || index == 0)
                    && let Some(e) = deliver(value)
                    && tx.send(e).is_err()
                {
                    return;
                }
                index = next_index(index, new);
            }
            Err(e) => {
                if tx.send(Event::Failed(e.message.clone())).is_err() {
                    return;
                }
                failures += 1;
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

fn blocking(index: u64, wait: Duration) -> Option<Blocking> {
    (index > 0).then(|| Blocking {
        index,
        wait: jittered(wait),
    })
}

async fn watch_lanes(client: Client, wait: Duration, tx: mpsc::UnboundedSender<Event>) {
    let prefix = format!("{}-lane/lanes/", client.settings().prefix);
    let c = Arc::new(client);
    watch(
        tx,
        |index| {
            let c = c.clone();
            let prefix = prefix.clone();
            async move { c.kv_list(&prefix, blocking(index, wait)).await }
        },
        |pairs| {
            let lanes = pairs
                .iter()
                .filter_map(|p| serde_json::from_slice::<Lane>(&p.value).ok())
                .collect();
            Some(Event::Lanes(lanes))
        },
    )
    .await
}

async fn watch_services(
    client: Client,
    prefix: String,
    wait: Duration,
    tx: mpsc::UnboundedSender<Event>,
) {
    let c = Arc::new(client);
    let lane_prefix = format!("{prefix}-lane.");
    let base_prefix = format!("{prefix}.");
    watch(
        tx,
        |index| {
            let c = c.clone();
            async move { c.catalog_services(blocking(index, wait)).await }
        },
        |services| {
            let names = services
                .into_keys()
                .filter(|n| n.starts_with(&lane_prefix) || n.starts_with(&base_prefix))
                .collect();
            Some(Event::Services(names))
        },
    )
    .await
}

async fn watch_health(
    client: Client,
    name: String,
    wait: Duration,
    tx: mpsc::UnboundedSender<Event>,
) {
    let c = Arc::new(client);
    let n = name.clone();
    watch(
        tx,
        |index| {
            let c = c.clone();
            let n = n.clone();
            async move {
                c.health_service(&n, false, &[], blocking(index, wait))
                    .await
            }
        },
        |list: Vec<ServiceEntry>| {
            Some(if list.is_empty() {
                Event::Gone(name.clone())
            } else {
                Event::Health(name.clone(), list)
            })
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_rules() {
        assert_eq!(next_index(0, 7), 7);
        assert_eq!(next_index(7, 9), 9);
        assert_eq!(next_index(9, 9), 9);
        // Backwards: reset.
        assert_eq!(next_index(9, 3), 0);
        // Zero is never blocked on.
        assert_eq!(next_index(0, 0), 1);
    }

    #[test]
    fn jitter_and_backoff_stay_in_bounds() {
        for _ in 0..100 {
            let w = jittered(Duration::from_secs(16));
            assert!(w >= Duration::from_secs(16) && w <= Duration::from_secs(17));
            let b = backoff(30);
            assert!(b <= BACKOFF_MAX && b >= BACKOFF_MAX / 2);
            let b = backoff(0);
            assert!(b <= BACKOFF_MIN);
        }
    }
}
