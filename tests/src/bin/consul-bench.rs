//! Benchmarks of the Consul scheme (issue 9), in one run:
//!
//! ```text
//! cargo run --release -p lane-tests --bin consul-bench -- [--lanes 1000] [--services 200] [--runs 21] [--updates 20] [--duration 3s]
//! ```
//!
//! 1. **The table at a shared datacenter's scale.** A registry snapshot of `--services` services
//!    with 3 baseline instances each and `--lanes` lane documents, each with a version of 1–3
//!    services (2 instances each), about a third stacked on an earlier lane, every instance passing
//!    except one in ten. Each run rebuilds the routing table from it with
//!    `lane_consul::watch::table` (what the router and every resolver do on each blocking-query
//!    answer): median, fastest and slowest time over `--runs` runs after a warm-up, and the peak
//!    heap of a run above the snapshot (a counting global allocator, `peak_alloc`). Then the routing
//!    decision (`RoutingTable::route`) over 1,000,000 requests of mixed services and lane values:
//!    nanoseconds per decision.
//! 2. **Registration → routable.** The Consul double (`lane_tests::consul`) in-process, the
//!    router's table fed by `lane_consul::watch::follow` (blocking queries over loopback HTTP):
//!    `--updates` times, a new passing lane instance is registered and the time until the table
//!    routes the lane's requests to it is taken (the table polled every 100 µs).
//! 3. **Consul-fed router vs local router.** Two `lane_router::Router`s on loopback in this
//!    process, one with a table set directly (as the local agent does), one fed from the double by
//!    blocking queries, in front of one hyper backend; one keep-alive HTTP/1.1 connection sends
//!    sequential `GET /` with `x-lane: feature-x` for `--duration` to each, interleaved in 6 runs;
//!    requests/s of each and the ratio.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use lane_consul::client::{AgentService, HealthCheck, Node, ServiceEntry};
use lane_consul::watch;
use lane_core::{Decision, Endpoint, Lane, LaneId, LaneRef, LaneValue, RoutingTable, ServiceId};
use lane_tests::consul::{ConsulDouble, Options};
use peak_alloc::PeakAlloc;
use serde_json::json;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

struct Args {
    lanes: usize,
    services: usize,
    runs: usize,
    updates: usize,
    duration: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        lanes: 1000,
        services: 200,
        runs: 21,
        updates: 20,
        duration: Duration::from_secs(3),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| -> Result<usize, String> {
            v.parse().map_err(|_| format!("`{v}` is not a number"))
        };
        match flag.as_str() {
            "--lanes" => a.lanes = number(value()?)?,
            "--services" => a.services = number(value()?)?.max(1),
            "--runs" => a.runs = number(value()?)?.max(1),
            "--updates" => a.updates = number(value()?)?.max(1),
            "--duration" => {
                let v = value()?;
                a.duration = lane_core::duration::parse_duration(&v)
                    .map_err(|e| format!("--duration {v}: {e}"))?;
            }
            "-h" | "--help" => {
                println!(
                    "consul-bench [--lanes 1000] [--services 200] [--runs 21] [--updates 20] [--duration 3s]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(a)
}

/// A fixed pseudo-random sequence (xorshift), so every run sees the same datacenter.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn service_name(i: usize) -> String {
    format!("app{}.svc{i}", i / 10)
}

fn entry(id: String, tags: Vec<String>, port: u16, passing: bool) -> ServiceEntry {
    ServiceEntry {
        node: Node {
            node: "node-1".into(),
            address: "10.0.0.1".into(),
        },
        service: AgentService {
            id,
            service: String::new(),
            tags: Some(tags),
            address: format!("10.1.{}.{}", port / 250, port % 250),
            port,
            meta: None,
        },
        checks: vec![
            HealthCheck {
                check_id: "serfHealth".into(),
                status: "passing".into(),
                output: String::new(),
                service_id: String::new(),
            },
            HealthCheck {
                check_id: "service".into(),
                status: if passing { "passing" } else { "critical" }.into(),
                output: String::new(),
                service_id: String::new(),
            },
        ],
    }
}

/// The snapshot: lane documents and `health/service` answers by service name.
fn snapshot(args: &Args) -> (Vec<Lane>, BTreeMap<String, Vec<ServiceEntry>>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut entries: BTreeMap<String, Vec<ServiceEntry>> = BTreeMap::new();
    let mut port = 1000u16;
    for s in 0..args.services {
        let name = format!("gaia.{}", service_name(s));
        for k in 0..3 {
            port = port.wrapping_add(1);
            let e = entry(format!("{name}-{k}"), vec![], port, rng.below(10) != 0);
            entries.entry(name.clone()).or_default().push(e);
        }
    }
    let mut lanes = Vec::new();
    for l in 0..args.lanes {
        let id: LaneId = format!("lane-{l}").parse().unwrap();
        let parent = (l > 0 && rng.below(3) == 0)
            .then(|| format!("lane-{}", rng.below(l)).parse::<LaneId>().unwrap());
        lanes.push(Lane::new(
            id.clone(),
            parent,
            "dev@example.com",
            0,
            Duration::from_secs(3600),
        ));
        for _ in 0..1 + rng.below(3) {
            let s = rng.below(args.services);
            let name = format!("gaia-lane.{}", service_name(s));
            for k in 0..2 {
                port = port.wrapping_add(1);
                let e = entry(
                    format!("{name}-{id}-{k}"),
                    vec![format!("lane={id}"), "owner=dev@example.com".into()],
                    port,
                    rng.below(10) != 0,
                );
                entries.entry(name.clone()).or_default().push(e);
            }
        }
    }
    (lanes, entries)
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn bench_table(args: &Args) {
    let (lanes, entries) = snapshot(args);
    let instances: usize = entries.values().map(Vec::len).sum();
    println!(
        "1. table: {} lanes, {} services, {} instances in the snapshot",
        lanes.len(),
        args.services,
        instances
    );
    let _warm = watch::table("gaia", &lanes, &entries, 0);
    drop(_warm);
    let mut times = Vec::new();
    let mut peak = 0usize;
    for run in 0..args.runs {
        let before = ALLOC.current_usage();
        ALLOC.reset_peak_usage();
        let t0 = Instant::now();
        let table = watch::table("gaia", &lanes, &entries, run as u64 + 1);
        times.push(t0.elapsed());
        peak = peak.max(ALLOC.peak_usage().saturating_sub(before));
        drop(table);
    }
    times.sort();
    println!(
        "   rebuild: median {:.2} ms (fastest {:.2}, slowest {:.2}) over {} runs (target < 50 ms)",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        args.runs
    );
    println!(
        "   peak heap of a rebuild above the snapshot: {:.2} MiB (target < 50 MB); snapshot {:.2} MiB",
        mib(peak),
        mib(ALLOC.current_usage())
    );
    let table = watch::table("gaia", &lanes, &entries, 1);
    let mut rng = Rng(42);
    let requests: Vec<(ServiceId, LaneValue)> = (0..4096)
        .map(|_| {
            let s: ServiceId = service_name(rng.below(args.services)).parse().unwrap();
            let v = match rng.below(4) {
                0 => LaneValue::Absent,
                _ => LaneValue::Lane(
                    format!("lane-{}", rng.below(args.lanes.max(1)))
                        .parse()
                        .unwrap(),
                ),
            };
            (s, v)
        })
        .collect();
    let n = 1_000_000usize;
    let mut served = 0usize;
    let t0 = Instant::now();
    for i in 0..n {
        let (s, v) = &requests[i % requests.len()];
        if let Decision::Serve { targets, .. } = std::hint::black_box(&table).route(s, v) {
            served += targets.len().min(1);
        }
    }
    let per = t0.elapsed().as_secs_f64() * 1e9 / n as f64;
    println!(
        "   routing decision: {per:.0} ns per decision over {n} decisions ({served} served; target < 1 µs)"
    );
}

fn register(consul: &ConsulDouble, id: &str, name: &str, tags: &[String], port: u16) {
    let body = json!({
        "ID": id, "Name": name, "Tags": tags, "Address": "127.0.0.1", "Port": port,
        "Check": {"TCP": format!("127.0.0.1:{port}"), "Interval": "10s", "Status": "passing"},
    });
    let (status, text) = consul
        .http(
            "PUT",
            "/v1/agent/service/register",
            None,
            body.to_string().as_bytes(),
        )
        .expect("register");
    assert_eq!(status, 200, "{text}");
}

fn put_lane(consul: &ConsulDouble, id: &str) {
    let lane = Lane::new(
        id.parse().unwrap(),
        None,
        "dev",
        0,
        Duration::from_secs(3600),
    );
    let (status, _) = consul
        .http(
            "PUT",
            &format!("/v1/kv/gaia-lane/lanes/{id}"),
            None,
            serde_json::to_string(&lane).unwrap().as_bytes(),
        )
        .expect("put lane");
    assert_eq!(status, 200);
}

/// A router whose table `watch::follow` feeds from `consul`.
fn consul_fed(rt: &tokio::runtime::Runtime, consul: &ConsulDouble) -> lane_router::TableHandle {
    let table = lane_router::TableHandle::new(RoutingTable::default());
    let settings = lane_consul::Settings::from_lookup(&lane_consul::Options::default(), |k| {
        (k == "CONSUL_HTTP_ADDR").then(|| consul.addr().to_string())
    })
    .unwrap();
    let client = lane_consul::client::Client::new(settings).unwrap();
    let feed = table.clone();
    rt.spawn(watch::follow(
        client,
        Duration::from_secs(60),
        move |t| feed.update(t),
        |_| {},
    ));
    table
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(100));
    }
}

fn bench_registration(args: &Args, rt: &tokio::runtime::Runtime) {
    let consul = ConsulDouble::start(Options::default()).unwrap();
    let table = consul_fed(rt, &consul);
    let svc: ServiceId = "demo.b".parse().unwrap();
    // Something listening, for the double's TCP checks.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    register(&consul, "gaia.demo.b-1", "gaia.demo.b", &[], port);
    wait_until("the baseline", || table.current().has_service(&svc));
    let mut times = Vec::new();
    for i in 0..args.updates {
        let lane = format!("r{i}");
        put_lane(&consul, &lane);
        std::thread::sleep(Duration::from_millis(20));
        let want: SocketAddr = ([127, 0, 0, 1], port).into();
        let value = LaneValue::Lane(lane.parse().unwrap());
        let t0 = Instant::now();
        register(
            &consul,
            &format!("gaia-lane.demo.b-{lane}"),
            "gaia-lane.demo.b",
            &[format!("lane={lane}")],
            port,
        );
        wait_until("the lane instance", || {
            matches!(table.current().route(&svc, &value),
                Decision::Serve { targets, .. } if targets == [want])
        });
        times.push(t0.elapsed());
    }
    times.sort();
    println!(
        "2. registration → routable (the register request included): median {:.2} ms, fastest {:.2}, slowest {:.2} over {} registrations (target < 100 ms)",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        args.updates
    );
}

/// One keep-alive connection, sequential requests for `d`: requests done.
fn load(addr: SocketAddr, d: Duration) -> u64 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let req = b"GET / HTTP/1.1\r\nHost: b.demo.localhost\r\nx-lane: feature-x\r\n\r\n";
    let mut buf = vec![0u8; 8192];
    let mut n = 0u64;
    let t0 = Instant::now();
    while t0.elapsed() < d {
        s.write_all(req).unwrap();
        let mut got = 0usize;
        loop {
            let k = s.read(&mut buf[got..]).unwrap();
            assert!(k > 0, "the router closed the connection");
            got += k;
            let head = &buf[..got];
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
                assert!(text.starts_with("http/1.1 200"), "{text}");
                let len: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if got >= end + 4 + len {
                    break;
                }
            }
        }
        n += 1;
    }
    n
}

fn bench_router(args: &Args, rt: &tokio::runtime::Runtime) {
    // The backend: answers `ok`.
    let backend = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let backend_addr = backend.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let Ok((s, _)) = backend.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let svc: ServiceId = "demo.b".parse().unwrap();
    let lane: LaneId = "feature-x".parse().unwrap();
    // Local: the table set directly, as the agent does.
    let local_table = lane_router::TableHandle::new(RoutingTable::from_lanes(
        [&Lane::new(
            lane.clone(),
            None,
            "dev",
            0,
            Duration::from_secs(3600),
        )],
        [
            Endpoint {
                service: svc.clone(),
                lane: LaneRef::Baseline,
                healthy: true,
                target: backend_addr,
            },
            Endpoint {
                service: svc.clone(),
                lane: LaneRef::Lane(lane.clone()),
                healthy: true,
                target: backend_addr,
            },
        ],
        1,
    ));
    // Consul-fed: the same instances registered in the double.
    let consul = ConsulDouble::start(Options::default()).unwrap();
    put_lane(&consul, "feature-x");
    register(
        &consul,
        "gaia.demo.b-1",
        "gaia.demo.b",
        &[],
        backend_addr.port(),
    );
    register(
        &consul,
        "gaia-lane.demo.b-feature-x",
        "gaia-lane.demo.b",
        &["lane=feature-x".into()],
        backend_addr.port(),
    );
    let consul_table = consul_fed(rt, &consul);
    let value = LaneValue::Lane(lane.clone());
    wait_until("the Consul-fed table", || {
        matches!(
            consul_table.current().route(&svc, &value),
            Decision::Serve {
                lane: LaneRef::Lane(_),
                ..
            }
        )
    });
    let serve = |table: lane_router::TableHandle| -> SocketAddr {
        let l = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = l.local_addr().unwrap();
        let router = lane_router::Router::new(lane_router::RouterConfig::default(), table);
        rt.spawn(router.serve(l, std::future::pending()));
        addr
    };
    let local = serve(local_table);
    let fed = serve(consul_table);
    let slice = args.duration / 6;
    let (mut n_local, mut n_fed) = (0u64, 0u64);
    let (mut t_local, mut t_fed) = (Duration::ZERO, Duration::ZERO);
    load(local, Duration::from_millis(200));
    load(fed, Duration::from_millis(200));
    for _ in 0..6 {
        let t0 = Instant::now();
        n_local += load(local, slice);
        t_local += t0.elapsed();
        let t0 = Instant::now();
        n_fed += load(fed, slice);
        t_fed += t0.elapsed();
    }
    let rps_local = n_local as f64 / t_local.as_secs_f64();
    let rps_fed = n_fed as f64 / t_fed.as_secs_f64();
    println!(
        "3. router, 1 keep-alive connection, HTTP/1.1: local table {rps_local:.0} req/s, Consul-fed {rps_fed:.0} req/s, ratio Consul-fed/local {:.3}",
        rps_fed / rps_local
    );
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("consul-bench: {e}");
            std::process::exit(2);
        }
    };
    bench_table(&args);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    bench_registration(&args, &rt);
    bench_router(&args, &rt);
}
