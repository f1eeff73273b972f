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

/// How `lane trace` sends the lane on its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// The lane header (`x-lane` unless `LANE_HEADER` says otherwise).
    Header,
    /// A W3C `baggage: lane=<id>` header, as OpenTelemetry's baggage propagator sends it.
    Baggage,
}

impl Carrier {
    /// What a hop failed to forward, for the problem text.
    fn what(self) -> &'static str {
        match self {
            Carrier::Header => "the lane header",
            Carrier::Baggage => "the `lane` baggage entry",
        }
    }
}

/// Compares served-by values (outermost first) with what the lane, sent as `carrier` says, should
/// have got.
pub fn analyse(
    status: &Status,
    lane: &LaneRef,
    served: &[String],
    carrier: Carrier,
) -> (Vec<Hop>, Vec<String>) {
    let table = lane_api::routing_table(status, 0, |i| Some(i.id.clone()));
    let mut hops = Vec::new();
    let mut problems = Vec::new();
    let name = |v: &String| v.rsplit_once('@').map_or(v.as_str(), |(s, _)| s).to_owned();
    // The last hop known to have received the lane: one served by a lane as it should be (the
    // client sent the lane to the first hop). A hop served by baseline as it should be tells
    // nothing: it could have received the lane or not.
    let mut last_with_lane = 0;
    for (i, value) in served.iter().enumerate() {
        let (service, got) = value.rsplit_once('@').unwrap_or((value.as_str(), "?"));
        let expected = service
            .parse::<ServiceId>()
            .map(|s| expected_lane(&table, lane, &s).to_string())
            .unwrap_or_else(|_| "?".into());
        let ok = got == expected;
        if ok && got != "baseline" {
            last_with_lane = i;
        }
        if !ok {
            let cause = if got == "baseline" && i > 0 {
                let suspects: Vec<String> = served[last_with_lane..i].iter().map(name).collect();
                let culprit = if let [one] = suspects.as_slice() {
                    format!("the hop before it ({one})")
                } else {
                    format!("one of the hops before it ({})", suspects.join(", "))
                };
                format!(
                    "{service} was served by baseline although lane {expected} has it: {culprit} did not forward {}",
                    carrier.what()
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
    carrier: Carrier,
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
    let baggage = format!("{}={lane_str}", lane_core::header::BAGGAGE_LANE_KEY);
    let headers: Vec<(&str, &str)> = match (&lane, carrier) {
        (LaneRef::Baseline, _) => vec![],
        (LaneRef::Lane(_), Carrier::Header) => {
            vec![(status.lane_header.as_str(), lane_str.as_str())]
        }
        (LaneRef::Lane(_), Carrier::Baggage) => vec![("baggage", baggage.as_str())],
    };
    let reply = http_client::get(addr, &host, &path, &headers).await?;
    let served = http_client::served_by(&reply.headers);
    let (hops, mut problems) = analyse(&status, &lane, &served, carrier);
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
        let via = match (&report.lane, carrier) {
            (LaneRef::Lane(_), Carrier::Baggage) => " via baggage",
            _ => "",
        };
        println!(
            "trace of {target} in lane {}{via} ({}):",
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
