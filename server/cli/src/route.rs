//! `lane route show|diff <host>`: the operator's plan for one host, read-only.
//!
//! Exit codes: 0 ok (diff: no difference), 1 the diff is not empty, 2 a bad host or preview,
//! 4 the plan reports a conflict for the host (diff only), 7 the cluster cannot be read.

use anyhow::anyhow;
use lane_kube::operator::{self, Config, Operator};
use lane_kube::route::{self, Preview, RouteView};

use crate::cli::{RouteCommand, RouteScope};

pub async fn run(command: RouteCommand) -> anyhow::Result<u8> {
    let (scope, preview) = match command {
        RouteCommand::Show { scope } => (scope, None),
        RouteCommand::Diff {
            scope, lane, image, ..
        } => {
            let preview = match (lane, image) {
                (Some(lane), Some(image)) => Some(Preview { lane, image }),
                _ => None,
            };
            (scope, Some(preview))
        }
    };
    let service = match route::parse_host(&scope.host) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    if let Some(Some(p)) = &preview {
        if let Err(e) = p.lane.parse::<lane_core::LaneId>() {
            eprintln!("error: --lane `{}`: {e}", p.lane);
            return Ok(2);
        }
        if p.image.trim().is_empty() {
            eprintln!("error: --image is empty");
            return Ok(2);
        }
    }
    let view = match read(&scope, &service, preview.as_ref().and_then(Option::as_ref)).await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(7);
        }
    };
    match preview {
        None => Ok(show(&view)),
        Some(_) => Ok(diff(&view)),
    }
}

async fn read(
    scope: &RouteScope,
    service: &lane_core::ServiceId,
    preview: Option<&Preview>,
) -> anyhow::Result<RouteView> {
    let client = operator::client(scope.kubeconfig.as_deref())
        .await
        .map_err(|e| anyhow!(e))?;
    let config = Config {
        namespaces: scope.namespaces.clone(),
        lane_header: Some(scope.lane_header.clone()),
        ..Config::default()
    };
    let op = Operator::new(client, config)?;
    Ok(route::view(&op, service, preview).await?)
}

fn print_conflicts(view: &RouteView) {
    for c in &view.conflicts {
        eprintln!("conflict: {c}");
    }
}

fn show(view: &RouteView) -> u8 {
    let (vs, dr) = view.desired_yaml();
    if vs.is_empty() && dr.is_empty() {
        println!(
            "# no lane routes wanted for {} ({})",
            view.host, view.service
        );
    }
    let mut first = true;
    for doc in [vs, dr].into_iter().filter(|d| !d.is_empty()) {
        if !first {
            println!("---");
        }
        first = false;
        print!("{doc}");
    }
    print_conflicts(view);
    0
}

fn diff(view: &RouteView) -> u8 {
    let text = view.diff();
    print!("{text}");
    print_conflicts(view);
    if !view.conflicts.is_empty() {
        4
    } else if text.is_empty() {
        0
    } else {
        1
    }
}
