//! `lane-bench`: the lane router against a direct connection and nginx (1 worker), in one run.
//!
//! Everything runs on this machine, over loopback:
//! - a trivial hyper backend (200 "ok") on its own thread (current-thread runtime);
//! - the lane `Router` — the library code the `lane` binary runs — in-process, on its own thread with
//!   a current-thread runtime (one core, like nginx's single worker);
//! - nginx with `worker_processes 1`, routing by `map $http_x_lane $upstream` to keep-alive
//!   upstreams (skipped with a note if `nginx` is not installed; `run.sh` installs it);
//! - the load generator on the main thread (current-thread runtime): N keep-alive connections, each
//!   sending sequential `GET /` with `x-lane: feature-x`, latency measured per request.
//!
//! Then it measures how long a `TableHandle::update` takes to be visible to requests.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lane_core::{Endpoint, LaneRef};
use lane_router::{Router, RouterConfig, Table, TableHandle};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "b.demo.localhost";
const ROUNDS: u32 = 5;

struct Args {
    duration: Duration,
    connections: Vec<usize>,
    nginx: bool,
    h2c: bool,
    updates: usize,
}

fn parse_duration(s: &str) -> Option<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    let secs = s.strip_suffix('s').unwrap_or(s);
    secs.parse::<f64>().ok().map(Duration::from_secs_f64)
}

fn parse_args() -> Args {
    let mut args = Args {
        duration: Duration::from_secs(5),
        connections: vec![1, 32],
        nginx: true,
        h2c: true,
        updates: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--duration" => {
                let v = it.next().unwrap_or_default();
                args.duration =
                    parse_duration(&v).unwrap_or_else(|| die(&format!("bad duration `{v}`")));
            }
            "--connections" => {
                let v = it.next().unwrap_or_default();
                args.connections = v
                    .split(',')
                    .map(|n| {
                        n.trim()
                            .parse()
                            .unwrap_or_else(|_| die(&format!("bad count `{n}`")))
                    })
                    .collect();
            }
            "--no-nginx" => args.nginx = false,
            "--no-h2c" => args.h2c = false,
            "--updates" => {
                args.updates = it.next().and_then(|v| v.parse().ok()).unwrap_or(20);
            }
            "-h" | "--help" => {
                println!(
                    "usage: lane-bench [--duration 5s] [--connections 1,32] [--updates 20] [--no-nginx] [--no-h2c]"
                );
                std::process::exit(0);
            }
            other => die(&format!("unknown argument `{other}`")),
        }
    }
    args
}

fn die(msg: &str) -> ! {
    eprintln!("lane-bench: {msg}");
    std::process::exit(2)
}

/// A server under test: its address, and where the kernel accounts its CPU time (`/proc/.../stat` of
/// the thread or process that does the work).
struct Server {
    addr: SocketAddr,
    stat: Option<String>,
}

/// CPU time (user + system) so far of the thread or process whose `/proc/.../stat` is `path`.
fn cpu_time(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15 (clock ticks, 100 Hz on Linux).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Runs `make` on a new thread with its own current-thread runtime.
fn spawn_server<F, Fut>(name: &str, make: F) -> Server
where
    F: FnOnce(std::net::TcpListener) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            // `/proc/thread-self` links to `<pid>/task/<tid>`.
            let me = std::fs::read_link("/proc/thread-self").ok();
            let _ = tx.send(me.map(|p| format!("/proc/{}/stat", p.display())));
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(make(listener));
        })
        .unwrap();
    Server {
        addr,
        stat: rx.recv().ok().flatten(),
    }
}

async fn backend(listener: std::net::TcpListener) {
    let listener = TcpListener::from_std(listener).unwrap();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = stream.set_nodelay(true);
        let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(
                b"ok",
            ))))
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        tokio::spawn(conn);
    }
}

fn table(backend: SocketAddr, with_lane: bool, generation: u64) -> Table {
    let mut eps = vec![Endpoint {
        service: "demo.b".parse().unwrap(),
        lane: LaneRef::Baseline,
        healthy: true,
        target: backend,
    }];
    if with_lane {
        eps.push(Endpoint {
            service: "demo.b".parse().unwrap(),
            lane: "feature-x".parse().unwrap(),
            healthy: true,
            target: backend,
        });
    }
    Table::new(eps, [], generation)
}

struct Nginx {
    child: Child,
    addr: SocketAddr,
    version: String,
    /// `/proc/<worker pid>/stat`: the one worker does all the proxying (the master only waits).
    worker_stat: Option<String>,
}

/// The pids of `pid`'s children.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its worker; SIGKILL would orphan the worker.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_nginx() -> Option<String> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(str::to_owned)
}

fn start_nginx(backend: SocketAddr) -> Result<Nginx, String> {
    let bin = find_nginx().ok_or("nginx is not installed (server/bench/run.sh installs it)")?;
    let version = Command::new(&bin)
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        l.local_addr().map_err(|e| e.to_string())?.port()
    };
    let dir = std::env::temp_dir().join(format!("lane-bench-nginx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let d = dir.display();
    // Same routing as the router: x-lane: feature-x → the lane upstream, anything else → baseline.
    // Both upstreams are the one backend, as in the router's table. nginx's map compares strings
    // case-insensitively, like the router's lane parsing.
    let conf = format!(
        "worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    upstream baseline_b {{ server {backend}; keepalive 64; keepalive_requests 1000000; }}
    upstream lane_feature_x_b {{ server {backend}; keepalive 64; keepalive_requests 1000000; }}
    map $http_x_lane $upstream {{
        default baseline_b;
        feature-x lane_feature_x_b;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://$upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $host;
            proxy_buffering on;
            add_header x-lane-served-by \"demo.b@$upstream\";
        }}
    }}
}}
"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let child = Command::new(&bin)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {bin}: {e}"))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut nginx = Nginx {
        child,
        addr,
        version,
        worker_stat: None,
    };
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = nginx.child.try_wait() {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            return Err(format!("nginx exited ({status}): {log}"));
        }
        if start.elapsed() > Duration::from_secs(5) {
            return Err("nginx did not start listening within 5 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    while nginx.worker_stat.is_none() && start.elapsed() < Duration::from_secs(5) {
        nginx.worker_stat = children(nginx.child.id())
            .first()
            .map(|pid| format!("/proc/{pid}/stat"));
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(nginx)
}

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    H1,
    H2,
}

#[derive(Default)]
struct Sample {
    requests: u64,
    errors: u64,
    latencies_ns: Vec<u32>,
    /// Requests answered including the warm-up (for CPU time per request).
    all: u64,
    /// CPU time the server under test used over the whole run, warm-up included.
    cpu: Option<Duration>,
    /// CPU time the load generator (this thread) used over the whole run.
    client_cpu: Option<Duration>,
}

enum Sender {
    H1(RawH1),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

/// The HTTP/1.1 load client: a keep-alive connection that writes one prepared request and reads
/// the response head (`httparse`) and its `Content-Length` body. Lean on purpose: the load
/// generator shares the two cores with the proxy under test, so every microsecond it spends is one
/// the proxy does not get (a hyper client used ≈ as much CPU per request as the proxy itself).
struct RawH1 {
    stream: TcpStream,
    buf: Vec<u8>,
}

const H1_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: b.demo.localhost\r\nx-lane: feature-x\r\n\r\n";

impl RawH1 {
    /// One request; the status, and `x-lane-served-by` when `served_by`.
    async fn send(&mut self, served_by: bool) -> Option<(u16, Option<String>)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.stream.write_all(H1_REQUEST).await.ok()?;
        self.buf.clear();
        loop {
            let parsed = {
                let mut headers = [httparse::EMPTY_HEADER; 16];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.buf).ok()? {
                    httparse::Status::Complete(head) => {
                        let value = |name: &str| {
                            resp.headers
                                .iter()
                                .find(|h| h.name.eq_ignore_ascii_case(name))
                                .map(|h| h.value)
                        };
                        let len: usize = std::str::from_utf8(value("content-length")?)
                            .ok()?
                            .parse()
                            .ok()?;
                        let who = if served_by {
                            value("x-lane-served-by")
                                .map(|v| String::from_utf8_lossy(v).into_owned())
                        } else {
                            None
                        };
                        Some((head + len, resp.code?, who))
                    }
                    httparse::Status::Partial => None,
                }
            };
            if let Some((total, code, who)) = parsed {
                while self.buf.len() < total {
                    self.buf.reserve(4096);
                    if self.stream.read_buf(&mut self.buf).await.ok()? == 0 {
                        return None;
                    }
                }
                return Some((code, who));
            }
            self.buf.reserve(4096);
            if self.stream.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }
}

async fn connect(addr: SocketAddr, proto: Proto) -> Sender {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    match proto {
        Proto::H1 => Sender::H1(RawH1 {
            stream,
            buf: Vec::with_capacity(4096),
        }),
        Proto::H2 => {
            let (send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            Sender::H2(send)
        }
    }
}

/// One request; `Some(served-by)` on a 200 (`served-by` read only when `served_by`).
async fn one(sender: &mut Sender, port: u16, served_by: bool) -> Option<Option<String>> {
    let s = match sender {
        Sender::H1(raw) => {
            let (code, who) = raw.send(served_by).await?;
            return (code == 200).then_some(who);
        }
        Sender::H2(s) => s,
    };
    let req = Request::get(format!("http://{HOST}:{port}/"))
        .version(http::Version::HTTP_2)
        .header("x-lane", "feature-x")
        .body(Empty::new())
        .unwrap();
    s.ready().await.ok()?;
    let resp = s.send_request(req).await.ok()?;
    let ok = resp.status() == 200;
    let who = if served_by {
        resp.headers()
            .get("x-lane-served-by")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    } else {
        None
    };
    resp.into_body().collect().await.ok()?;
    ok.then_some(who)
}

async fn load(addr: SocketAddr, proto: Proto, conns: usize, duration: Duration) -> Sample {
    let warmup = Duration::from_millis(300);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr, proto).await;
            let start = Instant::now();
            let measure_from = start + warmup;
            let end = measure_from + duration;
            let mut lat = Vec::with_capacity(1 << 16);
            let (mut requests, mut errors, mut all) = (0u64, 0u64, 0u64);
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let ok = one(&mut sender, addr.port(), false).await.is_some();
                all += u64::from(ok);
                if t0 >= measure_from {
                    requests += 1;
                    if ok {
                        lat.push(t0.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                    } else {
                        errors += 1;
                    }
                }
                if !ok {
                    sender = connect(addr, proto).await;
                }
            }
            Sample {
                requests,
                errors,
                latencies_ns: lat,
                all,
                cpu: None,
                client_cpu: None,
            }
        }));
    }
    let mut total = Sample::default();
    for t in tasks {
        let s = t.await.unwrap();
        total.requests += s.requests;
        total.errors += s.errors;
        total.all += s.all;
        total.latencies_ns.extend(s.latencies_ns);
    }
    total
}

struct Row {
    proto: &'static str,
    conns: usize,
    target: &'static str,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
    /// CPU time of the server under test per request, µs.
    cpu_us: Option<f64>,
    /// CPU time of the load generator per request, µs.
    client_cpu_us: Option<f64>,
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn main() {
    let args = parse_args();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());

    let backend = spawn_server("backend", backend);
    let backend_addr = backend.addr;
    let handle = TableHandle::new(table(backend_addr, true, 1));
    let router = Router::new(RouterConfig::default(), handle.clone());
    let router_server = spawn_server("router", move |l| async move {
        let l = TcpListener::from_std(l).unwrap();
        router.serve(l, std::future::pending()).await.unwrap();
    });
    let router_addr = router_server.addr;
    let nginx = if args.nginx {
        match start_nginx(backend_addr) {
            Ok(n) => Some(n),
            Err(e) => {
                eprintln!("lane-bench: nginx skipped: {e}");
                None
            }
        }
    } else {
        None
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    // (name, address, protocol, where the CPU time of the server under test is accounted: the
    // backend thread for direct, the router thread, nginx's worker process).
    let (b, r) = (&backend.stat, &router_server.stat);
    let mut targets: Vec<(&'static str, SocketAddr, Proto, &Option<String>)> = vec![
        ("direct", backend_addr, Proto::H1, b),
        ("lane router", router_addr, Proto::H1, r),
    ];
    if let Some(n) = &nginx {
        targets.push(("nginx", n.addr, Proto::H1, &n.worker_stat));
    }
    if args.h2c {
        targets.push(("direct", backend_addr, Proto::H2, b));
        targets.push(("lane router", router_addr, Proto::H2, r));
    }

    println!(
        "lane-bench: {cores} cores shared by backend, router, nginx and load generator; {:?} per target in {ROUNDS} interleaved runs, each after a 0.3 s warm-up",
        args.duration
    );
    if let Some(n) = &nginx {
        println!("nginx: {} (worker_processes 1)", n.version);
    }
    rt.block_on(async {
        // Sanity: every target answers, and the router really routes to the lane.
        for (name, addr, proto, _) in &targets {
            let mut s = connect(*addr, *proto).await;
            let served = one(&mut s, addr.port(), true).await;
            assert!(served.is_some(), "{name} did not answer 200");
            if *name == "lane router" {
                assert_eq!(served.unwrap().as_deref(), Some("demo.b@feature-x"));
            }
        }
        // Each (target, connections) gets `duration` in total, split into ROUNDS interleaved runs,
        // so that a noisy moment on the shared machine does not land on one target only.
        let slice = args.duration / ROUNDS;
        for &conns in &args.connections {
            let mut samples: Vec<Sample> = targets.iter().map(|_| Sample::default()).collect();
            for _ in 0..ROUNDS {
                for (i, (_, addr, proto, stat)) in targets.iter().enumerate() {
                    let cpu0 = stat.as_deref().and_then(cpu_time);
                    let me0 = cpu_time("/proc/thread-self/stat");
                    let s = load(*addr, *proto, conns, slice).await;
                    let cpu1 = stat.as_deref().and_then(cpu_time);
                    let me1 = cpu_time("/proc/thread-self/stat");
                    let total = &mut samples[i];
                    total.requests += s.requests;
                    total.errors += s.errors;
                    total.all += s.all;
                    total.latencies_ns.extend(s.latencies_ns);
                    total.cpu = match (cpu0, cpu1) {
                        (Some(a), Some(b)) => Some(total.cpu.unwrap_or_default() + (b - a)),
                        _ => None,
                    };
                    total.client_cpu = match (me0, me1) {
                        (Some(a), Some(b)) => Some(total.client_cpu.unwrap_or_default() + (b - a)),
                        _ => None,
                    };
                }
            }
            for ((name, _, proto, _), mut s) in targets.iter().zip(samples) {
                s.latencies_ns.sort_unstable();
                let row = Row {
                    proto: if *proto == Proto::H1 { "http/1.1" } else { "h2c" },
                    conns,
                    target: name,
                    rps: (s.requests - s.errors) as f64 / args.duration.as_secs_f64(),
                    p50_us: pct(&s.latencies_ns, 0.50),
                    p99_us: pct(&s.latencies_ns, 0.99),
                    errors: s.errors,
                    cpu_us: s
                        .cpu
                        .filter(|_| s.all > 0)
                        .map(|cpu| cpu.as_secs_f64() * 1e6 / s.all as f64),
                    client_cpu_us: s
                        .client_cpu
                        .filter(|_| s.all > 0)
                        .map(|cpu| cpu.as_secs_f64() * 1e6 / s.all as f64),
                };
                eprintln!(
                    "  {:<8} {:>3} conns {:<12} {:>9.0} req/s  p50 {:>7.1} µs  p99 {:>7.1} µs  CPU {:>5.1} µs/req (client {:>5.1})  errors {}",
                    row.proto,
                    row.conns,
                    row.target,
                    row.rps,
                    row.p50_us,
                    row.p99_us,
                    row.cpu_us.unwrap_or(f64::NAN),
                    row.client_cpu_us.unwrap_or(f64::NAN),
                    row.errors
                );
                rows.push(row);
            }
        }
    });

    println!();
    println!(
        "| proto | conns | target | req/s | p50 µs | p99 µs | req/s vs direct | p99 vs direct | errors |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        let direct = rows
            .iter()
            .find(|d| d.proto == r.proto && d.conns == r.conns && d.target == "direct")
            .unwrap();
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2} | {} |",
            r.proto,
            r.conns,
            r.target,
            r.rps,
            r.p50_us,
            r.p99_us,
            r.rps / direct.rps,
            r.p99_us / direct.p99_us,
            r.errors
        );
    }
    if nginx.is_some() {
        println!();
        println!("| conns | router/nginx req/s | router/nginx p50 | router/nginx p99 |");
        println!("| ---: | ---: | ---: | ---: |");
        for &c in &args.connections {
            let find = |t: &str| {
                rows.iter()
                    .find(|r| r.proto == "http/1.1" && r.conns == c && r.target == t)
                    .unwrap()
            };
            let (r, n) = (find("lane router"), find("nginx"));
            println!(
                "| {c} | {:.2} | {:.2} | {:.2} |",
                r.rps / n.rps,
                r.p50_us / n.p50_us,
                r.p99_us / n.p99_us
            );
        }
        // CPU time per request of the proxy alone (router thread vs nginx worker), the backend's
        // for scale: less sensitive to the machine's load than req/s and latency.
        println!();
        println!(
            "| conns | backend CPU µs/req (direct) | router CPU µs/req | nginx CPU µs/req | router/nginx CPU | load generator CPU µs/req (router, nginx) |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
        for &c in &args.connections {
            let row = |t: &str| {
                rows.iter()
                    .find(|r| r.proto == "http/1.1" && r.conns == c && r.target == t)
            };
            let cpu = |t: &str| row(t).and_then(|r| r.cpu_us).unwrap_or(f64::NAN);
            let client = |t: &str| row(t).and_then(|r| r.client_cpu_us).unwrap_or(f64::NAN);
            let (d, r, n) = (cpu("direct"), cpu("lane router"), cpu("nginx"));
            println!(
                "| {c} | {d:.1} | {r:.1} | {n:.1} | {:.2} | {:.1}, {:.1} |",
                r / n,
                client("lane router"),
                client("nginx")
            );
        }
    }
    println!(
        "\nh2c through nginx is not measured: nginx cannot proxy to h2c upstreams (proxy_http_version is 1.0/1.1 only; grpc_pass only for gRPC)."
    );

    // Table update → visible to requests.
    let mut took = rt.block_on(async {
        let mut s = connect(router_addr, Proto::H1).await;
        let mut took = Vec::new();
        for i in 0..args.updates {
            let with_lane = i % 2 == 1;
            let want = if with_lane {
                "demo.b@feature-x"
            } else {
                "demo.b@baseline"
            };
            let t0 = Instant::now();
            handle.update(table(backend_addr, with_lane, 10 + i as u64));
            loop {
                let got = one(&mut s, router_addr.port(), true).await.flatten();
                if got.as_deref() == Some(want) {
                    break;
                }
                if t0.elapsed() > Duration::from_secs(5) {
                    panic!("update {i} not visible after 5 s");
                }
            }
            took.push(t0.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        took
    });
    took.sort();
    if !took.is_empty() {
        println!(
            "\ntable update → first request routed by it ({} updates): p50 {:.1} µs, max {:.1} µs (target < 100 ms)",
            took.len(),
            took[took.len() / 2].as_secs_f64() * 1e6,
            took[took.len() - 1].as_secs_f64() * 1e6
        );
    }
    drop(nginx);
}
