//! `lane trace`: send one request with a lane id and explain, hop by hop, who served it — and
//! which hop lost the lane on the way.

use std::net::SocketAddr;

use anyhow::Context;
use lane_api::{Backend, InstanceId, Status};
use lane_core::{LaneRef, LaneValue, RoutingTable, ServiceId};
use serde::Serialize;

use crate::http_client;
use crate::requests::parse_lane;

#[derive(Debug, Serialize)]
pub struct Hop {
    pub service: String,
    pub served_by: String,
    pub expected: String,
    pub ok: bool,
}

#[derive(Debug, Serialize)]
pub struct TraceReport {
    pub lane: LaneRef,
    pub status: u16,
    pub hops: Vec<Hop>,
    pub problems: Vec<String>,
}

/// Which lane should serve `service` for a request in `lane`: the routing table's answer for
/// the backend's status (the same decision the router makes); baseline when nothing could serve.
pub fn expected_lane(
    table: &RoutingTable<InstanceId>,
    lane: &LaneRef,
    service: &ServiceId,
) -> LaneRef {
    let value = match lane {
        LaneRef::Baseline => LaneValue::Baseline,
        LaneRef::Lane(id) => LaneValue::Lane(id.clone()),
    };
    table
        .route(service, &value)
        .lane()
        .cloned()
        .unwrap_or(LaneRef::Baseline)
}

/// Compares served-by values (outermost first) with what the lane should have got.
pub fn analyse(status: &Status, lane: &LaneRef, served: &[String]) -> (Vec<Hop>, Vec<String>) {
    let table = lane_api::routing_table(status, 0, |i| Some(i.id.clone()));
    let mut hops = Vec::new();
    let mut problems = Vec::new();
    for (i, value) in served.iter().enumerate() {
        let (service, got) = value.rsplit_once('@').unwrap_or((value.as_str(), "?"));
        let expected = service
            .parse::<ServiceId>()
            .map(|s| expected_lane(&table, lane, &s).to_string())
            .unwrap_or_else(|_| "?".into());
        let ok = got == expected;
        if !ok {
            let cause = if got == "baseline" && i > 0 {
                format!(
                    "{service} was served by baseline although lane {expected} has it: the hop before it ({}) did not forward the lane header",
                    served[i - 1]
                        .rsplit_once('@')
                        .map_or(served[i - 1].as_str(), |(s, _)| s)
                )
            } else {
                format!("{service} was served by {got}, expected {expected}")
            };
            problems.push(cause);
        }
        hops.push(Hop {
            service: service.to_owned(),
            served_by: got.to_owned(),
            expected,
            ok,
        });
    }
    (hops, problems)
}

/// Resolves a trace target: a service id (sent via the router) or a URL.
fn resolve(target: &str, status: &Status) -> anyhow::Result<(SocketAddr, String, String)> {
    if let Ok(service) = target.parse::<ServiceId>()
        && !target.contains('/')
    {
        let router: SocketAddr = status
            .router
            .as_deref()
            .context("the backend has no router address")?
            .parse()?;
        return Ok((router, service.local_host(), "/".into()));
    }
    let uri: http::Uri = target.parse().map_err(|e| {
        lane_api::BackendError::invalid(format!(
            "`{target}` is neither a service id nor a URL: {e}"
        ))
    })?;
    let host = uri.host().context("the URL has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let ip = if lane_router::is_loopback_name(&host) {
        SocketAddr::from(([127, 0, 0, 1], port))
    } else {
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))?
            .next()
            .with_context(|| format!("cannot resolve {host}"))?
    };
    let path = uri.path_and_query().map_or("/".into(), |p| p.to_string());
    let host_header = match uri.port_u16() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    Ok((ip, host_header, path))
}

pub async fn run(
    backend: &dyn Backend,
    target: &str,
    lane: Option<&str>,
    json: bool,
) -> anyhow::Result<u8> {
    let status = backend.status().await?;
    let lane = match lane {
        Some("baseline") => LaneRef::Baseline,
        Some(l) => LaneRef::Lane(parse_lane(l)?),
        None => status.active_lane.clone(),
    };
    let (addr, host, path) = resolve(target, &status)?;
    let lane_str = lane.to_string();
    let headers: Vec<(&str, &str)> = match &lane {
        LaneRef::Baseline => vec![],
        LaneRef::Lane(_) => vec![(status.lane_header.as_str(), lane_str.as_str())],
    };
    let reply = http_client::get(addr, &host, &path, &headers).await?;
    let served = http_client::served_by(&reply.headers);
    let (hops, mut problems) = analyse(&status, &lane, &served);
    if served.is_empty() {
        problems.push(
            "the response has no x-lane-served-by header: did it go through the lane router?"
                .into(),
        );
    }
    if !reply.status.is_success() {
        problems.push(format!(
            "the request failed with {}: {}",
            reply.status,
            reply.body.trim()
        ));
    }
    let report = TraceReport {
        lane,
        status: reply.status.as_u16(),
        hops,
        problems,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "trace of {target} in lane {} ({}):",
            report.lane, reply.status
        );
        let rows: Vec<Vec<String>> = report
            .hops
            .iter()
            .enumerate()
            .map(|(i, h)| {
                vec![
                    (i + 1).to_string(),
                    h.service.clone(),
                    h.served_by.clone(),
                    h.expected.clone(),
                    if h.ok { "ok".into() } else { "WRONG".into() },
                ]
            })
            .collect();
        crate::output::table(&["HOP", "SERVICE", "SERVED BY", "EXPECTED", ""], &rows);
        for p in &report.problems {
            println!("problem: {p}");
        }
    }
    Ok(if report.problems.is_empty() { 0 } else { 8 })
}
