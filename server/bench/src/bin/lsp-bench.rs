//! Benchmark of the IDE daemon, `lane lsp`, driven over stdio as an IDE would.
//!
//! ```text
//! cargo build --release -p lane -p lane-bench
//! target/release/lsp-bench [--lane-bin target/release/lane] [--requests 1000] [--switches 10]
//! ```
//!
//! Measures: spawn → `initialize` response; `lane/status` latency (p50/p99 over N sequential
//! requests, after one warm-up that starts the agent); idle resident memory of the daemon; and
//! `git checkout` → `lane/statusChanged` carrying the new branch. It uses its own temporary
//! `LANE_HOME` and git repository and stops everything it started.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::git;
use serde_json::{Value, json};

mod common;

struct Args {
    lane_bin: PathBuf,
    requests: usize,
    switches: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        lane_bin: common::default_lane_bin(),
        requests: 1000,
        switches: 10,
    };
    let mut flags = common::Flags::new();
    while let Some(a) = flags.next_flag() {
        match a.as_str() {
            "--lane-bin" => args.lane_bin = flags.value("--lane-bin")?,
            "--requests" => args.requests = flags.value("--requests")?,
            "--switches" => args.switches = flags.value("--switches")?,
            "-h" | "--help" => {
                return Err(
                    "usage: lsp-bench [--lane-bin PATH] [--requests N] [--switches N]".into(),
                );
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(args)
}

/// Frames read from the daemon's stdout, with the time they arrived.
fn reader(stdout: impl Read + Send + 'static) -> mpsc::Receiver<(Instant, Value)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some(v) = line.strip_prefix("Content-Length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                return;
            }
            let at = Instant::now();
            if let Ok(v) = serde_json::from_slice::<Value>(&body)
                && tx.send((at, v)).is_err()
            {
                return;
            }
        }
    });
    rx
}

fn send(stdin: &mut ChildStdin, msg: &Value) {
    let body = msg.to_string();
    write!(stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).expect("daemon stdin is open");
    stdin.flush().expect("daemon stdin is open");
}

/// Waits for the response to `id`, skipping notifications and server requests (answered).
fn response(
    rx: &mpsc::Receiver<(Instant, Value)>,
    stdin: &mut ChildStdin,
    id: u64,
) -> (Instant, Value) {
    loop {
        let (at, v) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the daemon answers within 30s");
        if v.get("id") == Some(&json!(id)) && v.get("method").is_none() {
            return (at, v);
        }
        if let (Some(sid), Some(_)) = (v.get("id"), v.get("method")) {
            send(stdin, &json!({"jsonrpc": "2.0", "id": sid, "result": null}));
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if !args.lane_bin.exists() {
        eprintln!(
            "{} does not exist; build it with `cargo build --release -p lane`",
            args.lane_bin.display()
        );
        std::process::exit(2);
    }
    let root = std::env::temp_dir().join(format!("lane-lsp-bench-{}", std::process::id()));
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo).expect("temp dir is writable");
    std::fs::write(
        repo.join("lane.toml"),
        "app = \"bench\"\nproc = \"svc\"\n[run]\ncommand = \"sleep 1000\"\n",
    )
    .expect("temp dir is writable");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "init"]);

    let env = [
        ("LANE_HOME", root.join("home").display().to_string()),
        ("LANE_ROUTER_ADDR", "127.0.0.1:0".into()),
        ("LANE_PORT_RANGE", "48000-48099".into()),
    ];
    let spawned = Instant::now();
    let mut child: Child = Command::new(&args.lane_bin)
        .arg("lsp")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("lane lsp starts");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let rx = reader(child.stdout.take().expect("stdout is piped"));
    let uri = format!("file://{}", repo.display());
    send(
        &mut stdin,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "processId": std::process::id(), "rootUri": uri,
            "workspaceFolders": [{"uri": uri, "name": "repo"}],
            "capabilities": {"window": {"workDoneProgress": true}}}}),
    );
    let (at, _) = response(&rx, &mut stdin, 1);
    let init = at - spawned;
    send(
        &mut stdin,
        &json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}),
    );

    // Warm-up: starts the agent.
    let mut id = 2;
    send(
        &mut stdin,
        &json!({"jsonrpc": "2.0", "id": id, "method": "lane/status"}),
    );
    response(&rx, &mut stdin, id);
    let mut lat = Vec::with_capacity(args.requests);
    for _ in 0..args.requests {
        id += 1;
        let t = Instant::now();
        send(
            &mut stdin,
            &json!({"jsonrpc": "2.0", "id": id, "method": "lane/status"}),
        );
        let (at, _) = response(&rx, &mut stdin, id);
        lat.push(at - t);
    }
    lat.sort();

    std::thread::sleep(Duration::from_secs(1));
    while rx.try_recv().is_ok() {}
    let rss = rss_kib(child.id());

    let mut switch = Vec::new();
    for i in 0..args.switches {
        let branch = format!("b{i}");
        let t = Instant::now();
        git(&repo, &["checkout", "-q", "-b", &branch]);
        loop {
            let (at, v) = rx
                .recv_timeout(Duration::from_secs(5))
                .expect("lane/statusChanged within 5s of a branch switch");
            let is_it = v.get("method") == Some(&json!("lane/statusChanged"))
                && v["params"]["workspaces"]
                    .as_array()
                    .is_some_and(|ws| ws.iter().any(|w| w["branch"] == json!(branch)));
            if is_it {
                switch.push(at - t);
                break;
            }
        }
    }
    switch.sort();

    id += 1;
    send(
        &mut stdin,
        &json!({"jsonrpc": "2.0", "id": id, "method": "shutdown"}),
    );
    response(&rx, &mut stdin, id);
    send(&mut stdin, &json!({"jsonrpc": "2.0", "method": "exit"}));
    drop(stdin);
    let _ = child.wait();
    let _ = Command::new(&args.lane_bin)
        .arg("down")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(&root);

    println!("lane lsp benchmark ({})", args.lane_bin.display());
    println!("| measure | value | target |");
    println!("| --- | ---: | ---: |");
    println!("| spawn → initialize response | {} | < 100 ms |", ms(init));
    println!(
        "| lane/status p50 / p99 ({} requests) | {} / {} | p99 < 5 ms |",
        args.requests,
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99))
    );
    println!(
        "| idle resident memory | {:.1} MiB | < 30 MB |",
        rss as f64 / 1024.0
    );
    if !switch.is_empty() {
        println!(
            "| branch switch → lane/statusChanged p50 / max ({} switches) | {} / {} | < 300 ms |",
            switch.len(),
            ms(percentile(&switch, 0.5)),
            ms(*switch.last().expect("not empty"))
        );
    }
}
