//! Shared glue for the end-to-end tests: every test drives the real `lane` binary as a subprocess
//! against its own temporary `LANE_HOME`, router address and port range, and always stops
//! everything it started (`lane down`) — even when it fails — then checks that no process of its
//! state dir is left.
//!
//! Every test takes a distinct `index` (its port slice): nextest runs tests in parallel, each in
//! its own process, so the slices keep their ports apart. Slices live below the kernel's ephemeral
//! range (32768+), so the router's and the clients' ephemeral ports never land in them.

#![allow(dead_code)]

pub mod consul;
pub mod services;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// First port of the first test's slice.
const PORT_BASE: u16 = 21000;
/// Ports per test.
pub const PORTS_PER_TEST: u16 = 40;
/// How long any single `lane` command may take before the test gives up on it.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The `lane` binary under test: `$LANE_BIN`, else `<target dir>/debug/lane` next to this test
/// executable (`target/debug/deps/<test>` → `target/debug/lane`).
pub fn lane_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("LANE_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "LANE_BIN={} does not exist; build it or unset LANE_BIN",
            bin.display()
        );
        return bin;
    }
    let exe = std::env::current_exe().expect("the test knows its own path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from <target>/<profile>/deps");
    let bin = dir.join("lane");
    assert!(
        bin.is_file(),
        "the lane binary is not built: {} does not exist; run `cargo build -p lane` first \
         (or set LANE_BIN to a lane binary)",
        bin.display()
    );
    bin
}

/// The gRPC greeter fixture of this package.
pub fn greeter_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lane-test-grpc"))
}

/// The result of a finished `lane` command.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A `lane` command running in the background, its output going to files.
pub struct Running {
    pub child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) for the command to finish.
    pub fn wait(mut self, timeout: Duration) -> Out {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "command did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    read(&self.stdout),
                    read(&self.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.finish(status)
    }

    /// SIGKILLs the command and reaps it.
    pub fn kill9(mut self) -> Out {
        kill(self.child.id(), "KILL");
        let status = self.child.wait().expect("wait");
        self.finish(status)
    }

    fn finish(&self, status: ExitStatus) -> Out {
        Out {
            code: status.code().unwrap_or(-1),
            stdout: read(&self.stdout),
            stderr: read(&self.stderr),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// One test's world: a temp dir holding `LANE_HOME`, `HOME`, the user config and repos.
pub struct TestEnv {
    pub name: String,
    pub root: PathBuf,
    pub home: PathBuf,
    pub ports: (u16, u16),
    pub router_addr: String,
    pub bin: PathBuf,
    seq: std::cell::Cell<u32>,
    finished: bool,
}

impl TestEnv {
    /// A fresh world for the test `name`; `index` picks its port slice and must be unique.
    pub fn new(name: &str, index: u16) -> TestEnv {
        let bin = lane_bin();
        let root = std::env::temp_dir().join(format!("lane-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("home")).expect("create the temp dir");
        std::fs::create_dir_all(root.join("config")).expect("create the config dir");
        // The developer's global git identity (`lane` takes the owner from `user.email`).
        std::fs::write(
            root.join(".gitconfig"),
            "[user]\n\temail = alice@example.com\n\tname = Alice\n[init]\n\tdefaultBranch = main\n",
        )
        .expect("write .gitconfig");
        let lo = PORT_BASE + index * PORTS_PER_TEST;
        TestEnv {
            name: name.to_owned(),
            home: root.join("home"),
            root,
            ports: (lo, lo + PORTS_PER_TEST - 1),
            router_addr: "127.0.0.1:0".into(),
            bin,
            seq: std::cell::Cell::new(0),
            finished: false,
        }
    }

    /// The ports `lane` may give instances, as `LANE_PORT_RANGE` says it.
    pub fn port_range(&self) -> String {
        format!("{}-{}", self.ports.0, self.ports.1)
    }

    /// A `lane` command with this test's environment, run in `cwd`.
    pub fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args).current_dir(cwd).stdin(Stdio::null());
        for var in [
            "LANE_HEADER",
            "XDG_STATE_HOME",
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_CONFIG",
            "GIT_CONFIG_GLOBAL",
            "HTTP_PROXY",
            "http_proxy",
            "NO_COLOR",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("LANE_HOME", &self.home)
            .env("LANE_ROUTER_ADDR", &self.router_addr)
            .env("LANE_PORT_RANGE", self.port_range())
            .env("HOME", &self.root)
            .env("XDG_CONFIG_HOME", self.root.join("config"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Alice")
            .env("GIT_AUTHOR_EMAIL", "alice@example.com")
            .env("GIT_COMMITTER_NAME", "Alice")
            .env("GIT_COMMITTER_EMAIL", "alice@example.com")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info");
        cmd
    }

    /// Starts `lane args…` in the background.
    pub fn spawn_in(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        let n = self.seq.get() + 1;
        self.seq.set(n);
        let stdout = self.root.join(format!("cmd{n}.out"));
        let stderr = self.root.join(format!("cmd{n}.err"));
        let mut cmd = self.command(cwd, args);
        cmd.envs(env.iter().copied())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        Running {
            child,
            stdout,
            stderr,
        }
    }

    /// Runs `lane args…` in `cwd` to completion.
    pub fn run_in(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
        self.spawn_in(cwd, args, env).wait(COMMAND_TIMEOUT)
    }

    /// Runs `lane args…` in the temp root.
    pub fn run(&self, args: &[&str]) -> Out {
        self.run_in(&self.root, args, &[])
    }

    /// Runs `lane args…` in `cwd` and asserts it exits 0.
    pub fn ok_in(&self, cwd: &Path, args: &[&str]) -> Out {
        let out = self.run_in(cwd, args, &[]);
        assert_eq!(out.code, 0, "`lane {}` failed:\n{out}", args.join(" "));
        out
    }

    pub fn ok(&self, args: &[&str]) -> Out {
        self.ok_in(&self.root, args)
    }

    /// `lane status --json` → its `status` object.
    pub fn status(&self) -> Value {
        self.ok(&["status", "--json"]).json()["status"].clone()
    }

    /// The router's address from `lane status --json`.
    pub fn router(&self) -> SocketAddr {
        self.status()["router"]
            .as_str()
            .expect("status has a router address")
            .parse()
            .expect("the router address parses")
    }

    /// The lane `id` from `lane ls --json`, if it exists.
    pub fn lane(&self, id: &str) -> Option<Value> {
        self.ok(&["ls", "--json"])
            .json()
            .as_array()
            .expect("ls --json is an array")
            .iter()
            .find(|l| l["id"] == id)
            .cloned()
    }

    /// The instance of `service` (`demo.b`) in `lane` (`baseline` or a lane id) from the status.
    pub fn instance(&self, lane: &str, service: &str) -> Option<Value> {
        instance_in(&self.status(), lane, service)
    }

    /// Polls `f` every 100ms until it returns `Some`, for at most `timeout`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut() -> Option<T>,
    ) -> T {
        wait_for(what, timeout, &mut f)
    }

    /// The agent's pid from `$LANE_HOME/agent.json`.
    pub fn agent_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.home.join("agent.json")).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        v["pid"].as_u64().map(|p| p as u32)
    }

    /// The live processes (not zombies) whose environment carries this test's `LANE_HOME`: the
    /// agent, the versions it runs, their builds and any `lane` command still running.
    pub fn processes(&self) -> Vec<(u32, String)> {
        let marker = format!("LANE_HOME={}", self.home.display());
        let me = std::process::id();
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return found;
        };
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me || !alive(pid) {
                continue;
            }
            let Ok(environ) = std::fs::read(e.path().join("environ")) else {
                continue;
            };
            if environ
                .split(|b| *b == 0)
                .any(|var| var == marker.as_bytes())
            {
                found.push((pid, cmdline(pid)));
            }
        }
        found
    }

    /// A git repository `name` under the temp dir, with `lane.toml` = `manifest`, committed on
    /// `main`.
    pub fn repo(&self, name: &str, manifest: &str) -> PathBuf {
        let dir = self.root.join("repos").join(name);
        std::fs::create_dir_all(&dir).expect("create the repo dir");
        std::fs::write(dir.join("lane.toml"), manifest).expect("write lane.toml");
        std::fs::write(dir.join(".gitignore"), "built.txt\n").expect("write .gitignore");
        self.git(&dir, &["init", "-q", "-b", "main"]);
        self.git(&dir, &["config", "user.email", "alice@example.com"]);
        self.git(&dir, &["config", "user.name", "Alice"]);
        self.git(&dir, &["add", "."]);
        self.git(&dir, &["commit", "-q", "-m", "initial"]);
        dir
    }

    /// Runs git in `dir` with this test's identity; asserts it succeeds and returns stdout.
    pub fn git(&self, dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env("HOME", &self.root)
            .env("XDG_CONFIG_HOME", self.root.join("config"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Alice")
            .env("GIT_AUTHOR_EMAIL", "alice@example.com")
            .env("GIT_COMMITTER_NAME", "Alice")
            .env("GIT_COMMITTER_EMAIL", "alice@example.com")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `git checkout -b branch` in `dir`; returns the commit.
    pub fn branch(&self, dir: &Path, branch: &str) -> String {
        self.git(dir, &["checkout", "-q", "-b", branch]);
        self.git(dir, &["rev-parse", "HEAD"])
    }

    /// `lane down`, then waits (bounded) until no process of this `LANE_HOME` is left, and
    /// asserts so. Every test ends with it; if a test fails before, `Drop` does the same without
    /// asserting.
    pub fn finish(mut self) {
        self.finished = true;
        let leftovers = self.teardown();
        assert!(
            leftovers.is_empty(),
            "processes of {} were still running after `lane down` (killed now): {leftovers:#?}",
            self.home.display()
        );
        let _ = std::fs::remove_dir_all(&self.root);
    }

    /// Stops everything; returns (and kills) what was still running after `lane down`.
    fn teardown(&self) -> Vec<(u32, String)> {
        let down = self
            .spawn_in(&self.root, &["down"], &[])
            .wait(Duration::from_secs(40));
        if down.code != 0 {
            eprintln!("[{}] `lane down` failed:\n{down}", self.name);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut left = self.processes();
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            left = self.processes();
        }
        for (pid, _) in &left {
            kill(*pid, "KILL");
        }
        left
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if !self.finished {
            let left = self.teardown();
            if !left.is_empty() {
                eprintln!(
                    "[{}] killed processes left after `lane down`: {left:#?}",
                    self.name
                );
            }
            eprintln!(
                "[{}] state kept for inspection in {}",
                self.name,
                self.root.display()
            );
        }
    }
}

/// A `lane.toml` for the sample service `name` of app `demo` (calling `next` if given), with a
/// build command and an HTTP health check. `extra` is appended to `[run]`'s command line.
pub fn sample_manifest(bin: &Path, name: &str, next: Option<&str>, extra: &str) -> String {
    let next = next.map_or(String::new(), |n| format!(" --next {n}"));
    format!(
        "app = \"demo\"\nproc = \"{name}\"\n\n[build]\ncommand = \"echo building && touch built.txt\"\n\n\
         [run]\ncommand = \"'{}' sample-service --app demo --name {name}{next} --port {{port}}{extra}\"\n\n\
         [health]\nhttp = \"/healthz\"\ntimeout = \"20s\"\n",
        bin.display()
    )
}

/// The instance of `service` in `lane` within a `status` object.
pub fn instance_in(status: &Value, lane: &str, service: &str) -> Option<Value> {
    let list = if lane == "baseline" {
        status["baseline"].as_array()?.clone()
    } else {
        status["lanes"]
            .as_array()?
            .iter()
            .find(|l| l["id"] == lane)?["instances"]
            .as_array()?
            .clone()
    };
    list.into_iter().find(|i| i["service"] == service)
}

pub fn wait_for<T>(what: &str, timeout: Duration, f: &mut impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `pid` is a live process (zombies count as gone).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // `pid (comm) S …`: the state follows the last `)`.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

/// Sends `signal` (`KILL`, `TERM`) to `pid` with kill(1).
pub fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// An HTTP/1.1 response, as far as the tests need it.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    /// Every value of header `name` (lowercase), in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_owned()))
            .collect()
    }

    /// The `x-lane-served-by` values, outermost hop first.
    pub fn served_by(&self) -> Vec<String> {
        self.all("x-lane-served-by")
    }
}

/// `GET target` over a plain TCP connection to `addr` with `Host: host` and extra headers.
/// `target` is a path (`/`) or, for a proxy, an absolute URI.
pub fn http_get(addr: SocketAddr, host: &str, target: &str, headers: &[(&str, &str)]) -> HttpReply {
    try_http_get(addr, host, target, headers)
        .unwrap_or_else(|e| panic!("GET {target} (Host {host}) via {addr} failed: {e}"))
}

pub fn try_http_get(
    addr: SocketAddr,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpReply> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(HttpReply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A free port on 127.0.0.1 outside every test's slice (the kernel picks it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}
