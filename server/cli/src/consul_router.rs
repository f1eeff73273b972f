//! `lane router --registry consul`: the lane router fed from Consul by blocking queries
//! (`lane_consul::watch`): the lane documents in KV and the passing instances of
//! `<prefix>.<app>.<proc>` and `<prefix>-lane.<app>.<proc>`. When Consul stops answering it keeps
//! serving the last known table and says so in `/healthz`, `/metrics` and on stderr.

use std::net::SocketAddr;
use std::time::Duration;

use lane_backend::lane_consul::{self, watch};
use lane_router::registry::RegistryState;

use crate::requests::invalid;

/// How long each blocking query waits at most.
const WAIT: Duration = Duration::from_secs(60);

pub async fn run(
    listen: SocketAddr,
    lane_header: &str,
    prefix: &str,
    header_to_baggage: bool,
) -> anyhow::Result<()> {
    let config = crate::commands::router_config(lane_header, header_to_baggage)?;
    let header = config.lane_header.clone();
    let prefix = prefix.trim();
    if prefix.is_empty()
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(format!(
            "--prefix `{prefix}` is not a Consul name prefix (lowercase letters, digits and `-`)"
        )));
    }
    let settings = lane_consul::Settings::from_env(&lane_consul::Options {
        prefix: Some(prefix.to_owned()),
        ..Default::default()
    })?;
    let base_url = settings.base_url.clone();
    let client = lane_consul::client::Client::new(settings)?;
    let table = lane_router::TableHandle::new(lane_core::RoutingTable::default());
    table.set_registry(RegistryState::ok("consul"));
    let router = lane_router::Router::new(config, table.clone());
    let listener = crate::commands::bind_router(listen).await?;
    let bound = listener.local_addr().unwrap_or(listen);
    eprintln!(
        "lane router on http://{bound} (lane header `{header}`), following Consul at {base_url} \
         (prefix `{prefix}`)"
    );
    let feed = table.clone();
    // Whether Consul answers and which registrations do not resolve, both in /healthz and
    // /metrics (watch::follow_reporting logs each change too).
    let state = std::sync::Arc::new(std::sync::Mutex::new((
        watch::SourceHealth::Ok,
        Vec::<String>::new(),
    )));
    let publish = {
        let table = table.clone();
        move |(health, unresolved): &(watch::SourceHealth, Vec<String>)| {
            let r = match health {
                watch::SourceHealth::Ok => RegistryState::ok("consul"),
                watch::SourceHealth::Stale { since, error } => {
                    RegistryState::stale("consul", *since, error.clone())
                }
            };
            table.set_registry(r.with_unresolved(unresolved.clone()));
        }
    };
    let (on_health, on_unresolved) = {
        let (s1, s2) = (state.clone(), state);
        let (p1, p2) = (publish.clone(), publish);
        (
            move |h| {
                let mut s = s1.lock().unwrap_or_else(|e| e.into_inner());
                s.0 = h;
                p1(&s);
            },
            move |u| {
                let mut s = s2.lock().unwrap_or_else(|e| e.into_inner());
                s.1 = u;
                p2(&s);
            },
        )
    };
    tokio::spawn(watch::follow_reporting(
        client,
        WAIT,
        move |t| feed.update(t),
        on_health,
        on_unresolved,
    ));
    router
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
