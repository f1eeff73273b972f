//! The real `lane lsp` binary over stdio, with its own agent (temp `LANE_HOME`), a real git repo
//! and real service processes: initialize, status, deploy with progress, pushed status on branch
//! switch and traffic switch, cancelled deploys, garbage input, client exit.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const LANE: &str = env!("CARGO_BIN_EXE_lane");

/// A temp dir with `LANE_HOME`, `HOME`, config and a service repo; `lane down` and removal on drop.
struct Sandbox {
    root: PathBuf,
    lsp: Option<Child>,
    /// `LANE_PORT_RANGE`: each test its own, as tests run at once.
    ports: &'static str,
    /// More environment for the daemon and `lane` (e.g. an Apollo binding's token).
    extra_env: Vec<(String, String)>,
}

impl Sandbox {
    /// Waits (10 s at most) for the daemon to exit after `after`, and checks it exited with 0.
    fn wait_for_clean_exit(&mut self, after: &str) {
        let mut lsp = self.lsp.take().expect("the daemon runs");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = lsp.try_wait().expect("waitable") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "lane lsp did not exit after {after}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "lane lsp exited with {status}");
    }

    fn new(name: &str, ports: &'static str) -> Sandbox {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let root = std::env::temp_dir().join(format!("lane-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(root.join("cfg/lane")).expect("temp dir is writable");
        std::fs::write(
            root.join("cfg/lane/config.toml"),
            "owner = \"dev@example.com\"\n",
        )
        .expect("temp dir is writable");
        Sandbox {
            root,
            lsp: None,
            ports,
            extra_env: Vec::new(),
        }
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("LANE_HOME", self.root.join("home"))
            .env("LANE_ROUTER_ADDR", "127.0.0.1:0")
            .env("LANE_PORT_RANGE", self.ports)
            // No Consul agent listens there: a consul workspace's calls fail fast.
            .env("CONSUL_HTTP_ADDR", "127.0.0.1:1")
            .env("HOME", &self.root)
            .env("XDG_CONFIG_HOME", self.root.join("cfg"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Dev")
            .env("GIT_AUTHOR_EMAIL", "dev@example.com")
            .env("GIT_COMMITTER_NAME", "Dev")
            .env("GIT_COMMITTER_EMAIL", "dev@example.com")
            .env_remove("RUST_LOG")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)));
    }

    fn git(&self, repo: &Path, args: &[&str]) {
        let mut cmd = Command::new("git");
        self.env(&mut cmd);
        let out = cmd.args(args).current_dir(repo).output().expect("git runs");
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    /// The user config names no `owner`: the identity comes from git.
    fn without_config_owner(&self) {
        std::fs::write(self.root.join("cfg/lane/config.toml"), "# no owner\n")
            .expect("temp dir is writable");
    }

    /// A service repo `demo.b` on branch `main` with one commit.
    fn repo(&self, build: &str) -> PathBuf {
        self.repo_named("b", build)
    }

    /// [`Sandbox::repo`] in the directory `name`.
    fn repo_named(&self, name: &str, build: &str) -> PathBuf {
        let repo = self.root.join(name);
        std::fs::create_dir_all(&repo).expect("temp dir is writable");
        write_manifest(&repo, build);
        self.git(&repo, &["init", "-q", "-b", "main"]);
        self.git(&repo, &["add", "."]);
        self.git(&repo, &["commit", "-q", "-m", "b"]);
        repo
    }
}

fn write_manifest(repo: &Path, build: &str) {
    let manifest = format!(
        "app = \"demo\"\nproc = \"b\"\n[build]\ncommand = \"{build}\"\n[run]\ncommand = \"'{LANE}' \
         sample-service --app demo --name b --port {{port}}\"\n[health]\nhttp = \"/healthz\"\n\
         timeout = \"20s\"\n"
    );
    std::fs::write(repo.join("lane.toml"), manifest).expect("temp dir is writable");
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(mut lsp) = self.lsp.take() {
            let _ = lsp.kill();
            let _ = lsp.wait();
        }
        let mut down = Command::new(LANE);
        self.env(&mut down);
        let _ = down.arg("down").stdout(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A JSON-RPC client over the daemon's stdio.
struct Client {
    stdin: ChildStdin,
    rx: Receiver<Value>,
    /// Messages read but not consumed yet.
    seen: Vec<Value>,
    next_id: i64,
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

impl Client {
    fn spawn(sandbox: &mut Sandbox) -> Client {
        Client::spawn_in(sandbox, None)
    }

    /// The daemon started in `cwd` (else in the test's own directory).
    fn spawn_in(sandbox: &mut Sandbox, cwd: Option<&Path>) -> Client {
        let mut cmd = Command::new(LANE);
        sandbox.env(&mut cmd);
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("lane lsp starts");
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        sandbox.lsp = Some(child);
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut len = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.parse::<usize>().ok();
                    }
                }
                let mut body = vec![0; len.expect("every frame has a Content-Length")];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let msg: Value = serde_json::from_slice(&body).expect("stdout carries only JSON");
                if tx.send(msg).is_err() {
                    return;
                }
            }
        });
        Client {
            stdin,
            rx,
            seen: Vec::new(),
            next_id: 1,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.stdin.write_all(bytes).expect("the daemon reads stdin");
        self.stdin.flush().expect("the daemon reads stdin");
    }

    fn send(&mut self, msg: Value) {
        let body = serde_json::to_vec(&msg).expect("JSON serializes");
        self.write(&frame(&body));
    }

    fn request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Reads one message, answering the daemon's own requests (progress token creation).
    fn read(&mut self, deadline: Instant) -> Option<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(msg) => {
                if msg.get("method").is_some() && msg.get("id").is_some() {
                    let id = msg["id"].clone();
                    self.send(json!({"jsonrpc": "2.0", "id": id, "result": null}));
                }
                Some(msg)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => panic!("the daemon closed stdout"),
        }
    }

    /// The first message (seen or new) matching `pred`, within `timeout`.
    fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(pos) = self.seen.iter().position(&pred) {
            return self.seen.remove(pos);
        }
        let deadline = Instant::now() + timeout;
        while let Some(msg) = self.read(deadline) {
            if pred(&msg) {
                return msg;
            }
            self.seen.push(msg);
        }
        panic!("no {what} within {timeout:?}; saw {:#?}", self.seen);
    }

    fn response(&mut self, id: i64, timeout: Duration) -> Value {
        self.wait_for(&format!("response {id}"), timeout, |m| {
            m["id"] == json!(id) && m.get("method").is_none()
        })
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params);
        let resp = self.response(id, Duration::from_secs(60));
        assert!(resp.get("error").is_none(), "{method} failed: {resp}");
        resp["result"].clone()
    }

    /// `initialize` with one workspace folder (no client capabilities), then `initialized`.
    fn open_folder(&mut self, uri: impl Into<String>, name: &str) {
        let uri: String = uri.into();
        self.call(
            "initialize",
            json!({
                "processId": null,
                "capabilities": {},
                "workspaceFolders": [{"uri": uri, "name": name}],
            }),
        );
        self.notify("initialized", json!({}));
    }

    fn command(&mut self, command: &str, args: Value) -> i64 {
        self.request(
            "workspace/executeCommand",
            json!({"command": command, "arguments": [args]}),
        )
    }

    fn status_changed(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_for(what, timeout, |m| {
            m["method"] == "lane/statusChanged" && pred(&m["params"])
        })["params"]
            .clone()
    }

    /// Reads what arrives within `wait` into `seen`.
    fn drain_into_seen(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while let Some(m) = self.read(deadline) {
            self.seen.push(m);
        }
    }

    /// Forgets every message read so far.
    fn drain(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(300);
        while self.read(deadline).is_some() {}
        self.seen.clear();
    }
}

fn lane<'a>(status: &'a Value, id: &str) -> Option<&'a Value> {
    status["lanes"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["id"] == id))
}

fn healthy_in(status: &Value, id: &str) -> bool {
    lane(status, id).is_some_and(|l| {
        l["services"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["service"] == "demo.b" && s["state"] == "healthy")
        })
    })
}

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| {
            String::from_utf8_lossy(c)
                .replace('\0', " ")
                .contains(needle)
        })
        .count()
}

/// Runs a slow deploy into `lane`, cancels it with `cancel` once its progress began, and checks
/// that it answers `RequestCancelled` and leaves neither the lane nor the build behind.
fn cancelled_deploy(c: &mut Client, lane_id: &str, cancel: impl Fn(&mut Client, i64, &Value)) {
    let id = c.command("lane.deployCurrentBranch", json!({"lane": lane_id}));
    let begin = c.wait_for("slow deploy progress begin", Duration::from_secs(20), |m| {
        m["method"] == "$/progress" && m["params"]["value"]["kind"] == "begin"
    });
    let token = begin["params"]["token"].clone();
    c.wait_for("the slow build to start", Duration::from_secs(20), |m| {
        m["method"] == "$/progress"
            && m["params"]["token"] == token
            && m["params"]["value"]["message"]
                .as_str()
                .is_some_and(|s| s.starts_with("build"))
    });
    let started = Instant::now();
    while processes_with("sleep 29.5") == 0 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    cancel(c, id, &token);
    let resp = c.response(id, Duration::from_secs(10));
    assert_eq!(resp["error"]["code"], json!(-32800), "{resp}");
    c.wait_for("progress end", Duration::from_secs(5), |m| {
        m["method"] == "$/progress"
            && m["params"]["token"] == token
            && m["params"]["value"]["kind"] == "end"
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = c.call("lane/status", Value::Null);
        let gone = lane(&st, lane_id).is_none() && processes_with("sleep 29.5") == 0;
        if gone {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a cancelled deploy left lane {lane_id} or its build behind: {st}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_daemon_serves_status_deploy_switch_and_cancel_over_stdio() {
    let mut sandbox = Sandbox::new("lsp", "47300-47399");
    let repo = sandbox.repo("true");
    let mut c = Client::spawn(&mut sandbox);
    let uri = format!("file://{}", repo.display());

    let init = c.call(
        "initialize",
        json!({
            "processId": null,
            "capabilities": {"window": {"workDoneProgress": true}},
            "workspaceFolders": [{"uri": uri, "name": "b"}],
            "trace": "off",
        }),
    );
    let commands = &init["capabilities"]["executeCommandProvider"]["commands"];
    for cmd in [
        "lane.status",
        "lane.deployCurrentBranch",
        "lane.switchTraffic",
        "lane.list",
        "lane.create",
        "lane.delete",
        "lane.extend",
        "lane.assign",
    ] {
        assert!(
            commands.as_array().is_some_and(|c| c.contains(&json!(cmd))),
            "{cmd} not advertised: {init}"
        );
    }
    c.notify("initialized", json!({}));

    // Status: the folder's service and branch; the agent starts on demand.
    let st = c.call("lane/status", Value::Null);
    assert_eq!(st["workspaces"][0]["service"], "demo.b", "{st}");
    assert_eq!(st["workspaces"][0]["branch"], "main", "{st}");
    assert_eq!(st["activeLane"], "baseline");
    assert!(st["backendError"].is_null(), "{st}");
    assert!(
        st["workspaces"][0]["host"]
            .as_str()
            .is_some_and(|h| h.starts_with("b.demo.localhost:")),
        "{st}"
    );

    // Deploy the current branch into a new lane, with progress stage by stage.
    let id = c.command("lane.deployCurrentBranch", json!({"lane": "feature-x"}));
    let resp = c.response(id, Duration::from_secs(90));
    assert!(resp.get("error").is_none(), "deploy failed: {resp}");
    assert_eq!(resp["result"]["state"], "healthy", "{resp}");
    assert_eq!(resp["result"]["lane"], "feature-x");
    assert_eq!(resp["result"]["branch"], "main");
    let progress: Vec<Value> = c
        .seen
        .iter()
        .filter(|m| m["method"] == "$/progress")
        .map(|m| m["params"]["value"].clone())
        .collect();
    assert_eq!(
        progress.first().map(|p| &p["kind"]),
        Some(&json!("begin")),
        "{progress:#?}"
    );
    assert_eq!(
        progress.last().map(|p| &p["kind"]),
        Some(&json!("end")),
        "{progress:#?}"
    );
    for stage in ["build", "start", "health", "register", "route"] {
        assert!(
            progress.iter().any(|p| p["kind"] == "report"
                && p["message"].as_str().is_some_and(|m| m.starts_with(stage))),
            "no {stage} report in {progress:#?}"
        );
    }
    let percents: Vec<u64> = progress
        .iter()
        .filter_map(|p| p["percentage"].as_u64())
        .collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
    c.status_changed(
        "status with feature-x healthy",
        Duration::from_secs(10),
        |s| healthy_in(s, "feature-x"),
    );

    // A branch switch is pushed within a second.
    c.drain();
    sandbox.git(&repo, &["checkout", "-q", "-b", "other"]);
    let switched = Instant::now();
    let st = c.status_changed("status on branch other", Duration::from_secs(1), |s| {
        s["workspaces"][0]["branch"] == "other"
    });
    assert!(switched.elapsed() < Duration::from_secs(1));
    assert_eq!(st["workspaces"][0]["service"], "demo.b");

    // Traffic switch.
    let id = c.command("lane.switchTraffic", json!({"lane": "feature-x"}));
    let resp = c.response(id, Duration::from_secs(10));
    assert_eq!(resp["result"]["activeLane"], "feature-x", "{resp}");
    let st = c.status_changed("status with active lane", Duration::from_secs(5), |s| {
        s["activeLane"] == "feature-x"
    });
    assert_eq!(
        (st["healthy"].clone(), st["total"].clone()),
        (json!(1), json!(1))
    );

    // Lane errors are JSON-RPC errors with data and a showMessage.
    let id = c.command("lane.delete", json!({"lane": "no-such-lane"}));
    let resp = c.response(id, Duration::from_secs(10));
    assert_eq!(resp["error"]["code"], json!(-32001), "{resp}");
    assert_eq!(resp["error"]["data"]["code"], "not_found", "{resp}");
    c.wait_for("showMessage", Duration::from_secs(5), |m| {
        m["method"] == "window/showMessage"
    });
    let id = c.command("lane.create", json!({"lan": "typo"}));
    let resp = c.response(id, Duration::from_secs(10));
    assert_eq!(resp["error"]["code"], json!(-32602), "{resp}");

    // Cancelled deploys (by progress cancel, and by $/cancelRequest) leave nothing behind.
    write_manifest(&repo, "sleep 29.5");
    cancelled_deploy(&mut c, "slow", |c, _, token| {
        c.notify("window/workDoneProgress/cancel", json!({"token": token}));
    });
    cancelled_deploy(&mut c, "slow-two", |c, id, _| {
        c.notify("$/cancelRequest", json!({"id": id}));
    });

    // Garbage, an unknown method and an oversized message do not hurt it.
    c.write(b"this is not a frame\r\n\r\n");
    c.write(&frame(b"{not json"));
    c.notify("lane/noSuchNotification", json!({}));
    c.send(json!({"jsonrpc": "1.0", "id": 999, "method": "lane/status"}));
    let resp = c.response(999, Duration::from_secs(10));
    assert_eq!(resp["error"]["code"], json!(-32600), "{resp}");
    let big = "x".repeat(8 * 1024 * 1024);
    let id = c.request("lane/noSuchRequest", json!({"blob": big}));
    let resp = c.response(id, Duration::from_secs(30));
    assert_eq!(resp["error"]["code"], json!(-32601), "{resp}");
    // Over the daemon's 16 MiB limit: skipped unread, the daemon goes on.
    let huge = "x".repeat(17 * 1024 * 1024);
    c.request("lane/noSuchRequest", json!({"blob": huge}));
    let st = c.call("lane/status", Value::Null);
    assert!(lane(&st, "feature-x").is_some(), "{st}");

    // The client goes away: the daemon exits cleanly.
    let Client { stdin, .. } = c;
    drop(stdin);
    sandbox.wait_for_clean_exit("stdin closed");
}

/// `lane/status` and `shutdown` take no parameters: absent, `null`, `{}` and `[]` are all "none"
/// (JSON-RPC allows each, and client libraries differ); real parameters are still refused.
#[test]
fn requests_without_parameters_accept_absent_null_and_empty_params() {
    let mut sandbox = Sandbox::new("lsp-params", "26000-26099");
    let repo = sandbox.repo("true");
    let mut c = Client::spawn(&mut sandbox);
    c.open_folder(format!("file://{}", repo.display()), "b");

    let mut ids = Vec::new();
    for (form, params) in [
        ("absent", None),
        ("null", Some(Value::Null)),
        ("{}", Some(json!({}))),
        ("[]", Some(json!([]))),
    ] {
        let id = c.next_id;
        c.next_id += 1;
        let mut msg = json!({"jsonrpc": "2.0", "id": id, "method": "lane/status"});
        if let Some(params) = params {
            msg["params"] = params;
        }
        c.send(msg);
        ids.push((form, id));
    }
    for (form, id) in ids {
        let resp = c.response(id, Duration::from_secs(60));
        assert!(
            resp.get("error").is_none(),
            "lane/status with params {form}: {resp}"
        );
        assert_eq!(
            resp["result"]["workspaces"][0]["service"], "demo.b",
            "lane/status with params {form}: {resp}"
        );
        assert!(resp["result"]["backendError"].is_null(), "{resp}");
    }

    let id = c.request("lane/status", json!({"folder": "b"}));
    let resp = c.response(id, Duration::from_secs(10));
    assert_eq!(resp["error"]["code"], json!(-32602), "{resp}");

    // `shutdown` with `{}`, then `exit`: the daemon ends cleanly.
    let id = c.request("shutdown", json!({}));
    let resp = c.response(id, Duration::from_secs(10));
    assert!(resp.get("error").is_none(), "shutdown with {{}}: {resp}");
    c.notify("exit", json!({}));
    sandbox.wait_for_clean_exit("exit");
}

#[test]
fn describe_names_every_command_and_shape() {
    let out = Command::new(LANE)
        .args(["lsp", "--describe"])
        .output()
        .expect("lane runs");
    assert!(out.status.success());
    let d: Value = serde_json::from_slice(&out.stdout).expect("--describe prints JSON");
    assert_eq!(d["requests"][0]["method"], "lane/status");
    assert_eq!(d["requests"][1]["method"], "lane/history");
    assert_eq!(d["requests"][1]["params"], "HistoryParams");
    assert_eq!(d["notifications"][0]["method"], "lane/statusChanged");
    assert_eq!(d["commands"].as_array().map(Vec::len), Some(14));
    assert_eq!(d["commands"][8]["command"], "lane.data.ls");
    assert_eq!(d["commands"][8]["result"], "DataInfo[]");
    assert_eq!(d["commands"][9]["command"], "lane.data.export");
    assert_eq!(d["commands"][9]["progress"], true);
    assert_eq!(d["commands"][12]["command"], "lane.data.backups");
    assert_eq!(d["commands"][12]["result"], "DataBackupInfo[]");
    assert_eq!(d["commands"][12]["progress"], false);
    assert_eq!(d["types"]["LaneStatus"]["activeLane"], "string");
}

/// A monorepo opened at its root: every directory with a `lane.toml` is a service of the status,
/// and deploying one (the extension passes its folder) builds that service from its directory.
#[test]
fn a_monorepo_folder_lists_its_services_and_deploys_one() {
    let mut sandbox = Sandbox::new("lsp-mono", "47400-47499");
    let mono = sandbox.root.join("mono");
    for (dir, proc_) in [("services/b", "b"), ("services/c", "c"), ("build/out", "x")] {
        std::fs::create_dir_all(mono.join(dir)).expect("temp dir is writable");
        let manifest = format!(
            "app = \"demo\"\nproc = \"{proc_}\"\n[run]\ncommand = \"'{LANE}' sample-service --app \
             demo --name {proc_} --port {{port}}\"\n[health]\nhttp = \"/healthz\"\n"
        );
        std::fs::write(mono.join(dir).join("lane.toml"), manifest).expect("temp dir is writable");
    }
    // `build/` is ignored: its lane.toml is an output, not a service.
    std::fs::write(mono.join(".gitignore"), "build/\n").expect("temp dir is writable");
    sandbox.git(&mono, &["init", "-q", "-b", "main"]);
    sandbox.git(&mono, &["add", "."]);
    sandbox.git(&mono, &["commit", "-q", "-m", "mono"]);

    let mut c = Client::spawn(&mut sandbox);
    c.open_folder(format!("file://{}", mono.display()), "mono");
    let st = c.call("lane/status", Value::Null);
    let services: Vec<&str> = st["workspaces"]
        .as_array()
        .expect("workspaces")
        .iter()
        .filter_map(|w| w["service"].as_str())
        .collect();
    assert_eq!(services, ["demo.b", "demo.c"], "{st}");
    let folder_c = st["workspaces"][1]["folder"].as_str().expect("a folder");
    assert!(folder_c.ends_with("mono/services/c"), "{st}");

    // Two services: the deploy needs to be told which, and then deploys that one.
    let id = c.command("lane.deployCurrentBranch", json!({"lane": "mono"}));
    let resp = c.response(id, Duration::from_secs(30));
    assert!(
        resp["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("several services")),
        "{resp}"
    );
    let id = c.command(
        "lane.deployCurrentBranch",
        json!({"lane": "mono", "folder": folder_c}),
    );
    let resp = c.response(id, Duration::from_secs(90));
    assert!(resp.get("error").is_none(), "deploy failed: {resp}");
    assert_eq!(resp["result"]["service"], "demo.c", "{resp}");
    assert_eq!(resp["result"]["state"], "healthy", "{resp}");

    // A service added and committed shows up in a pushed status.
    std::fs::create_dir_all(mono.join("services/d")).expect("temp dir is writable");
    std::fs::write(
        mono.join("services/d/lane.toml"),
        "app = \"demo\"\nproc = \"d\"\n[run]\ncommand = \"true\"\n",
    )
    .expect("temp dir is writable");
    sandbox.git(&mono, &["add", "."]);
    sandbox.git(&mono, &["commit", "-q", "-m", "d"]);
    c.status_changed("a status with service d", Duration::from_secs(10), |st| {
        st["workspaces"]
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w["service"] == "demo.d"))
    });
}

/// A `file://` URI for `path`, with its spaces percent-encoded as IDEs send them.
fn file_uri(path: &Path) -> String {
    format!("file://{}", path.display()).replace(' ', "%20")
}

/// A linked worktree (its `.git` is a file naming a git dir elsewhere), in a folder whose name
/// has a space: the status names its service and its own branch, and a branch switch in it is
/// pushed.
#[test]
fn a_linked_worktree_branch_switch_reaches_lane_status_changed() {
    let mut sandbox = Sandbox::new("lsp-worktree", "47500-47599");
    let repo = sandbox.repo("true");
    let wt = sandbox.root.join("linked worktree");
    sandbox.git(
        &repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "feature",
            &wt.display().to_string(),
        ],
    );
    assert!(wt.join(".git").is_file());

    let mut c = Client::spawn(&mut sandbox);
    let uri = file_uri(&wt);
    assert!(uri.contains("%20"), "{uri}");
    c.open_folder(uri, "linked worktree");
    // The first push comes once the watcher is set up.
    let st = c.status_changed("the first status", Duration::from_secs(10), |s| {
        s["workspaces"][0]["branch"] == "feature"
    });
    assert_eq!(
        st["workspaces"][0]["folder"],
        wt.display().to_string(),
        "{st}"
    );
    assert_eq!(st["workspaces"][0]["service"], "demo.b", "{st}");
    assert!(st["workspaces"][0]["error"].is_null(), "{st}");

    c.drain();
    sandbox.git(&wt, &["switch", "-q", "-c", "other"]);
    let st = c.status_changed(
        "a pushed status on branch other",
        Duration::from_secs(2),
        |s| s["workspaces"][0]["branch"] == "other",
    );
    assert_eq!(st["workspaces"][0]["service"], "demo.b", "{st}");
    // A commit in the worktree moves the shared refs: pushed too.
    c.drain();
    sandbox.git(&wt, &["commit", "-q", "--allow-empty", "-m", "two"]);
    let head = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&wt)
            .output()
            .expect("git runs")
            .stdout,
    )
    .expect("a commit id");
    c.status_changed(
        "a pushed status with the new commit",
        Duration::from_secs(2),
        |s| s["workspaces"][0]["commit"] == head.trim(),
    );
}

/// The daemon's identity is the workspace repository's `user.email` (no `owner` in the user
/// config), not that of the directory the daemon was started in; a deploy whose `folder` is a
/// percent-encoded `file://` URI deploys that folder.
#[test]
fn the_owner_is_the_workspace_repository_s_user_email() {
    let mut sandbox = Sandbox::new("lsp-owner", "47600-47699");
    sandbox.without_config_owner();
    let repo = sandbox.repo_named("my service", "true");
    sandbox.git(&repo, &["config", "user.email", "repo-dev@example.com"]);
    // The daemon starts in another repository, with another user.email.
    let elsewhere = sandbox.root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("temp dir is writable");
    sandbox.git(&elsewhere, &["init", "-q"]);
    sandbox.git(&elsewhere, &["config", "user.email", "cwd-dev@example.com"]);

    let mut c = Client::spawn_in(&mut sandbox, Some(&elsewhere));
    let uri = file_uri(&repo);
    c.open_folder(uri.clone(), "my service");

    let created = c.call(
        "workspace/executeCommand",
        json!({"command": "lane.create", "arguments": [{"lane": "mine"}]}),
    );
    assert_eq!(created["owner"], "repo-dev@example.com", "{created}");

    let id = c.command(
        "lane.deployCurrentBranch",
        json!({"lane": "theirs", "folder": uri}),
    );
    let resp = c.response(id, Duration::from_secs(90));
    assert!(resp.get("error").is_none(), "deploy failed: {resp}");
    assert_eq!(resp["result"]["service"], "demo.b", "{resp}");
    assert_eq!(resp["result"]["branch"], "main", "{resp}");
    let st = c.call("lane/status", Value::Null);
    let theirs = lane(&st, "theirs").expect("the deploy created lane theirs");
    assert_eq!(theirs["owner"], "repo-dev@example.com", "{st}");
}

#[test]
fn a_consul_folder_with_consul_unreachable_shows_why_and_starts_nothing() {
    let mut sandbox = Sandbox::new("lsp-kind", "47900-47999");
    let repo = sandbox.repo("true");
    let mut manifest = std::fs::read_to_string(repo.join("lane.toml")).expect("the manifest");
    manifest.push_str("[backend]\nkind = \"consul\"\n");
    std::fs::write(repo.join("lane.toml"), &manifest).expect("temp dir is writable");

    let mut c = Client::spawn(&mut sandbox);
    c.open_folder(format!("file://{}", repo.display()), "b");
    let st = c.call("lane/status", Value::Null);
    let error = st["backendError"]["message"].as_str().unwrap_or_default();
    assert!(
        error.contains("cannot reach Consul at http://127.0.0.1:1 (CONSUL_HTTP_ADDR)"),
        "{st}"
    );
    assert_eq!(st["backend"], "consul", "{st}");
    let id = c.command("lane.deployCurrentBranch", json!({"lane": "feature-x"}));
    let resp = c.response(id, Duration::from_secs(30));
    assert!(
        resp["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Consul") || m.contains("consul")),
        "{resp}"
    );
    let home = sandbox.root.join("home");
    assert!(
        !home.join("agent.json").exists() && !home.join("state.json").exists(),
        "no local agent was started for a consul workspace"
    );
}

/// `lane lsp` on a `kind = "kubernetes"` folder shows the cluster's lanes with health, from a
/// real kube-apiserver (`lane_tests::apiserver`). The test writes the Lane as `admin` and plays
/// the lane operator and the Deployment controller: it creates the lane Deployment and marks its
/// replica ready.
#[test]
fn a_kubernetes_folder_shows_the_cluster_s_lanes_with_health() {
    let server = lane_tests::apiserver::ApiServer::start();
    let admin = server.kubeconfig("admin");
    let kubectl = |stdin: &str| {
        let mut child = Command::new(lane_tests::apiserver::kubectl())
            .arg("--kubeconfig")
            .arg(&admin)
            .args(["apply", "--server-side", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(stdin.as_bytes())
            .expect("kubectl reads stdin");
        let out = child.wait_with_output().expect("kubectl finishes");
        assert!(out.status.success(), "kubectl apply: {out:?}");
    };
    for file in ["crd.yaml", "environment-crd.yaml"] {
        let path = format!("{}/../../deploy/{file}", env!("CARGO_MANIFEST_DIR"));
        kubectl(&std::fs::read_to_string(&path).expect("deploy/*.yaml"));
    }
    let wait = Command::new(lane_tests::apiserver::kubectl())
        .arg("--kubeconfig")
        .arg(&admin)
        .args([
            "wait",
            "--for=condition=Established",
            "crd/lanes.lane.dev",
            "crd/laneenvironments.lane.dev",
        ])
        .output()
        .expect("kubectl runs");
    assert!(wait.status.success(), "{wait:?}");
    kubectl(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"demo"}}"#);
    kubectl(
        r#"{"apiVersion":"lane.dev/v1alpha1","kind":"LaneEnvironment","metadata":{"name":"dev","namespace":"demo"},
            "spec":{"production":{"namespace":"prod"}}}"#,
    );
    kubectl(
        r#"{"apiVersion":"lane.dev/v1alpha1","kind":"Lane","metadata":{"name":"cluster-lane","namespace":"demo"},
            "spec":{"owner":"alice","expires":"2099-01-01T00:00:00Z",
                    "services":{"demo.b":{"image":"demo/b:1","version":"feat@0123abcd"}}}}"#,
    );
    // As the lane operator: the lane Deployment; as the Deployment controller: its replica ready.
    kubectl(
        r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"b-lane-cluster-lane",
            "namespace":"demo","labels":{"lane.dev/lane":"cluster-lane"}},
            "spec":{"replicas":1,"selector":{"matchLabels":{"lane.dev/lane":"cluster-lane"}},
                    "template":{"metadata":{"labels":{"lane.dev/lane":"cluster-lane"}},
                                "spec":{"containers":[{"name":"b","image":"demo/b:1"}]}}}}"#,
    );
    let ready = Command::new(lane_tests::apiserver::kubectl())
        .arg("--kubeconfig")
        .arg(&admin)
        .args([
            "-n",
            "demo",
            "patch",
            "deployment",
            "b-lane-cluster-lane",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"replicas":1,"readyReplicas":1}}"#,
        ])
        .output()
        .expect("kubectl runs");
    assert!(ready.status.success(), "{ready:?}");

    let mut sandbox = Sandbox::new("lsp-kube", "48000-48099");
    let repo = sandbox.repo("true");
    let mut manifest = std::fs::read_to_string(repo.join("lane.toml")).expect("the manifest");
    manifest.push_str("[backend]\nkind = \"kubernetes\"\n");
    std::fs::write(repo.join("lane.toml"), &manifest).expect("temp dir is writable");
    // The daemon finds the cluster the usual way: here `~/.kube/config` (HOME is the sandbox).
    std::fs::create_dir_all(sandbox.root.join(".kube")).expect("temp dir is writable");
    std::fs::copy(&admin, sandbox.root.join(".kube/config")).expect("copy the kubeconfig");
    let mut c = Client::spawn_in(&mut sandbox, Some(&repo));
    c.open_folder(format!("file://{}", repo.display()), "b");
    let st = c.call("lane/status", Value::Null);
    assert_eq!(st["backend"], "kubernetes", "{st}");
    assert!(healthy_in(&st, "cluster-lane"), "{st}");
    // A Lane made on the cluster afterwards is pushed (a watch from the status's revision).
    kubectl(
        r#"{"apiVersion":"lane.dev/v1alpha1","kind":"Lane","metadata":{"name":"later","namespace":"demo"},
            "spec":{"owner":"bob","expires":"2099-01-01T00:00:00Z"}}"#,
    );
    let pushed = c.status_changed("status with lane later", Duration::from_secs(30), |s| {
        lane(s, "later").is_some()
    });
    assert_eq!(lane(&pushed, "later").expect("later")["owner"], "bob");
    // Health changes are pushed too: as the Deployment controller, its replica is not ready.
    let unready = Command::new(lane_tests::apiserver::kubectl())
        .arg("--kubeconfig")
        .arg(&admin)
        .args([
            "-n",
            "demo",
            "patch",
            "deployment",
            "b-lane-cluster-lane",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"readyReplicas":0}}"#,
        ])
        .output()
        .expect("kubectl runs");
    assert!(unready.status.success(), "{unready:?}");
    c.status_changed(
        "status with cluster-lane not healthy",
        Duration::from_secs(30),
        |s| lane(s, "cluster-lane").is_some() && !healthy_in(s, "cluster-lane"),
    );
    // Baseline drift is pushed too: as the lane operator, the LaneEnvironment's status says
    // baseline b is behind production (nothing else changes meanwhile).
    let path = "/apis/lane.dev/v1alpha1/namespaces/demo/laneenvironments/dev";
    let get = Command::new(lane_tests::apiserver::kubectl())
        .arg("--kubeconfig")
        .arg(&admin)
        .args(["get", "--raw", path])
        .output()
        .expect("kubectl runs");
    assert!(get.status.success(), "{get:?}");
    let mut env: Value = serde_json::from_slice(&get.stdout).expect("a LaneEnvironment");
    env["status"] = json!({"services": 1, "inSync": 0, "baseline": [{
        "deployment": "b", "drift": "Behind", "productionImage": "demo/b:2",
        "baselineImage": "demo/b:1", "reason": "rolling out production's images"}]});
    let mut put = Command::new(lane_tests::apiserver::kubectl())
        .arg("--kubeconfig")
        .arg(&admin)
        .args(["replace", "--raw", &format!("{path}/status"), "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    put.stdin
        .take()
        .expect("stdin is piped")
        .write_all(env.to_string().as_bytes())
        .expect("kubectl reads stdin");
    let put = put.wait_with_output().expect("kubectl finishes");
    assert!(put.status.success(), "{put:?}");
    let pushed = c.status_changed(
        "status with baseline b behind production",
        Duration::from_secs(20),
        |s| {
            s["baselineSync"]
                .as_array()
                .is_some_and(|b| b.iter().any(|e| e["service"] == "demo.b"))
        },
    );
    let b = &pushed["baselineSync"][0];
    assert_eq!(b["drift"], "behind", "{pushed}");
    assert_eq!(b["production"], "demo/b:2", "{pushed}");
    assert_eq!(b["follows"], "namespace prod", "{pushed}");
    let home = sandbox.root.join("home");
    assert!(
        !home.join("agent.json").exists(),
        "no local agent was started for a kubernetes workspace"
    );
}

/// A GET through the router at `router` to `host` with `headers`: the status line and the body.
fn get_via_router(router: &str, host: &str, headers: &[(&str, &str)]) -> String {
    let mut s = std::net::TcpStream::connect(router).expect("the router listens");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("a timeout can be set");
    let mut req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("the router reads");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Issue 14, item 3: a deploy's result says how to reach the version it made (router, host, lane
/// header), so a copied request reaches the new lane even while the developer's traffic is on
/// baseline.
#[test]
fn a_deploy_result_names_the_request_that_reaches_it() {
    let mut sandbox = Sandbox::new("lsp-deployed", "26400-26449");
    let repo = sandbox.repo("true");
    let mut c = Client::spawn(&mut sandbox);
    c.open_folder(file_uri(&repo), "b");
    let st = c.call("lane/status", Value::Null);
    assert_eq!(st["activeLane"], "baseline", "{st}");

    let r = c.call(
        "workspace/executeCommand",
        json!({"command": "lane.deployCurrentBranch", "arguments": [{"lane": "copy-a"}]}),
    );
    assert_eq!(r["lane"], "copy-a", "{r}");
    assert_eq!(r["laneHeader"], "x-lane", "{r}");
    let router = r["router"].as_str().expect("the router's address");
    let host = r["host"].as_str().expect("the service's host");
    assert!(host.starts_with("b.demo.localhost:"), "{r}");
    assert_eq!(r["url"], format!("http://{host}/"), "{r}");

    let answer = get_via_router(router, host, &[("x-lane", "copy-a")]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("b (lane header: copy-a)"), "{answer}");
    // Without the header the request stays on baseline, which runs no demo.b.
    let plain = get_via_router(router, host, &[]);
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
    // Issue 14, item 9: the deploy's stages reached the IDE's output (the client asked for no
    // progress), and the status names the service's log file.
    let logs: Vec<String> = c
        .seen
        .iter()
        .filter(|m| m["method"] == "window/logMessage")
        .filter_map(|m| m["params"]["message"].as_str().map(str::to_owned))
        .collect();
    for want in [
        "[demo.b] deploying main@",
        "[demo.b] build: ",
        "[demo.b] health: ",
        "[demo.b] demo.b main@",
    ] {
        assert!(
            logs.iter().any(|l| l.starts_with(want)),
            "no `{want}` in {logs:#?}"
        );
    }
    let st = c.status_changed("copy-a healthy", Duration::from_secs(20), |s| {
        healthy_in(s, "copy-a")
    });
    let log = lane(&st, "copy-a").expect("copy-a")["services"][0]["log"]
        .as_str()
        .expect("a local service has a log file")
        .to_owned();
    let text = std::fs::read_to_string(&log).expect("the log file exists");
    assert!(text.contains("listening"), "{log}: {text}");
}

/// Issue 14, item 5: a failed build is one error (the client, which shows the error it is
/// answered, turns the daemon's `window/showMessage` off) and stays on the service in the status
/// until the next deploy.
#[test]
fn a_failed_deploy_stays_in_the_status_until_the_next_one_and_is_shown_once() {
    let mut sandbox = Sandbox::new("lsp-failed", "26450-26499");
    let repo = sandbox.repo("true");
    let mut c = Client::spawn(&mut sandbox);
    c.call(
        "initialize",
        json!({
            "processId": null,
            "capabilities": {},
            "workspaceFolders": [{"uri": file_uri(&repo), "name": "b"}],
            "initializationOptions": {"client": "test", "showErrors": false},
        }),
    );
    c.notify("initialized", json!({}));
    let st = c.call("lane/status", Value::Null);
    assert_eq!(st["deployFailures"], json!([]), "{st}");

    write_manifest(&repo, "echo boom; exit 3");
    let id = c.command("lane.deployCurrentBranch", json!({"lane": "fail-a"}));
    let resp = c.response(id, Duration::from_secs(60));
    assert_eq!(resp["error"]["data"]["code"], "build_failed", "{resp}");
    let st = c.status_changed("the failure in the status", Duration::from_secs(20), |s| {
        s["deployFailures"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    });
    let f = &st["deployFailures"][0];
    assert_eq!(f["service"], "demo.b", "{st}");
    assert_eq!(f["lane"], "fail-a", "{st}");
    assert_eq!(f["branch"], "main", "{st}");
    assert_eq!(f["error"]["code"], "build_failed", "{st}");
    assert!(
        f["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("boom")),
        "{st}"
    );
    // The build's output reached the client as log lines.
    assert!(
        c.seen.iter().any(
            |m| m["method"] == "window/logMessage" && m["params"]["message"] == "[demo.b] boom"
        ),
        "no build output in {:#?}",
        c.seen
    );
    // No second popup: the client shows the error it was answered.
    c.drain_into_seen(Duration::from_millis(500));
    assert!(
        !c.seen.iter().any(|m| m["method"] == "window/showMessage"),
        "window/showMessage despite showErrors false: {:#?}",
        c.seen
    );

    // The next deploy of the service into the lane clears it.
    write_manifest(&repo, "true");
    let id = c.command("lane.deployCurrentBranch", json!({"lane": "fail-a"}));
    let resp = c.response(id, Duration::from_secs(90));
    assert!(resp.get("error").is_none(), "{resp}");
    c.status_changed("no failure, fail-a healthy", Duration::from_secs(30), |s| {
        s["deployFailures"] == json!([]) && healthy_in(s, "fail-a")
    });
    // Issue 14, item 10: deleting the active lane says what stops and where requests go now.
    c.call(
        "workspace/executeCommand",
        json!({"command": "lane.switchTraffic", "arguments": [{"lane": "fail-a"}]}),
    );
    let r = c.call(
        "workspace/executeCommand",
        json!({"command": "lane.delete", "arguments": [{"lane": "fail-a"}]}),
    );
    assert_eq!(
        r,
        json!({"deleted": "fail-a", "stopped": ["demo.b"], "activeLane": "baseline"})
    );
}

#[test]
fn lane_history_returns_every_change_to_a_lane_even_after_it_is_deleted() {
    let mut sandbox = Sandbox::new("lsp-history", "26240-26279");
    let repo = sandbox.repo_named("b", "true");
    let mut c = Client::spawn(&mut sandbox);
    c.open_folder(file_uri(&repo), "b");
    c.call(
        "workspace/executeCommand",
        json!({"command": "lane.create", "arguments": [{"lane": "hist"}]}),
    );
    c.call(
        "workspace/executeCommand",
        json!({"command": "lane.extend", "arguments": [{"lane": "hist", "by": "1h"}]}),
    );
    c.call(
        "workspace/executeCommand",
        json!({"command": "lane.delete", "arguments": [{"lane": "hist"}]}),
    );
    let entries = c.call("lane/history", json!({"lane": "hist"}));
    let events: Vec<&str> = entries
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| e["event"].as_str().expect("event is a string"))
        .collect();
    assert_eq!(events, ["create", "extend", "delete"], "{entries:#}");
    for e in entries.as_array().unwrap() {
        assert_eq!(e["lane"], "hist");
        assert!(e["owner"].as_str().is_some_and(|o| !o.is_empty()), "{e}");
        assert_eq!(e["actor"], e["owner"], "{e}");
        assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()), "{e}");
        assert!(
            e.get("service").is_some(),
            "optional fields are present: {e}"
        );
    }
    // A lane that never was is a lane error saying so; a bad id is invalid params.
    let id = c.request("lane/history", json!({"lane": "never-was"}));
    let resp = c.response(id, Duration::from_secs(30));
    assert_eq!(resp["error"]["code"], -32001, "{resp}");
    assert!(
        resp["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no history")),
        "{resp}"
    );
    let id = c.request("lane/history", json!({"lane": "Not A Lane"}));
    let resp = c.response(id, Duration::from_secs(30));
    assert_eq!(resp["error"]["code"], -32602, "{resp}");
}

#[test]
fn a_lane_whose_branch_is_merged_is_pushed_as_merged_and_extend_keeps_it() {
    let mut sandbox = Sandbox::new("lsp-merged", "48100-48199");
    let repo = sandbox.repo_named("b", "true");
    sandbox.git(&repo, &["checkout", "-q", "-b", "feat"]);
    std::fs::write(repo.join("feat.txt"), "feat\n").expect("temp dir is writable");
    sandbox.git(&repo, &["add", "."]);
    sandbox.git(&repo, &["commit", "-q", "-m", "feat"]);
    // The deploy starts the agent with an hour between merge checks: the merge below is seen
    // because main's ref moved, not because the interval came round.
    let mut deploy = Command::new(LANE);
    sandbox.env(&mut deploy);
    let out = deploy
        .args(["deploy", "--lane", "merging"])
        .current_dir(&repo)
        .env("LANE_MERGE_CHECK_INTERVAL", "1h")
        .env("LANE_MERGED_GRACE", "1h")
        .output()
        .expect("lane deploy runs");
    assert!(out.status.success(), "{out:?}");
    let mut c = Client::spawn(&mut sandbox);
    c.open_folder(file_uri(&repo), "b");
    let st = c.call("lane/status", json!(null));
    assert_eq!(
        lane(&st, "merging").expect("the lane")["merged"],
        Value::Null
    );

    sandbox.git(&repo, &["checkout", "-q", "main"]);
    sandbox.git(&repo, &["merge", "-q", "--ff-only", "feat"]);
    let st = c.status_changed("the lane marked merged", Duration::from_secs(30), |s| {
        lane(s, "merging").is_some_and(|l| !l["merged"].is_null())
    });
    let merged = &lane(&st, "merging").expect("the lane")["merged"];
    let since = merged["since"].as_u64().expect("since");
    assert_eq!(merged["reclaimAt"].as_u64(), Some(since + 3600), "{merged}");
    assert_eq!(merged["target"], "main", "{merged}");
    assert!(
        merged["reason"]
            .as_str()
            .is_some_and(|r| r.contains("branch feat into main")),
        "{merged}"
    );

    c.call(
        "workspace/executeCommand",
        json!({"command": "lane.extend", "arguments": [{"lane": "merging", "by": "1h"}]}),
    );
    let st = c.status_changed("the merged lane kept", Duration::from_secs(30), |s| {
        lane(s, "merging")
            .is_some_and(|l| l["merged"].is_object() && l["merged"]["reclaimAt"].is_null())
    });
    assert_eq!(
        lane(&st, "merging").expect("the lane")["merged"]["target"],
        "main"
    );
}

/// Issue 10: `lane.data.ls` over the wire: what a lane owns of its data (here an Apollo cluster,
/// against the Apollo Open API double, and a key-prefix Redis binding on real Redis, database
/// 28), the same rows as `lane data ls --json` with every field present; filtered by lane; bad
/// arguments are invalid params.
#[test]
fn lane_data_ls_lists_what_each_lane_owns() {
    use lane_tests::apollo::{ApolloDouble, Options};
    let apollo = ApolloDouble::start(Options {
        tokens: [("lsp-token".to_owned(), vec!["cart".to_owned()])].into(),
        apps: vec!["cart".into()],
        ..Options::default()
    })
    .expect("the Apollo double starts");
    let redis_url = format!("{}/28", service_url("LANE_TEST_REDIS_URL"));
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let mut r = rt
        .block_on(lane_data::redis::Redis::connect(&redis_url))
        .expect("Redis");
    rt.block_on(r.cmd(&[b"SELECT", b"28"])).expect("SELECT");
    rt.block_on(r.cmd(&[b"FLUSHDB"])).expect("FLUSHDB");
    let mut sandbox = Sandbox::new("lsp-data", "48300-48399");
    sandbox
        .extra_env
        .push(("CART_APOLLO_TOKEN".into(), "lsp-token".into()));
    let repo = sandbox.repo("true");
    let manifest = std::fs::read_to_string(repo.join("lane.toml")).expect("lane.toml");
    std::fs::write(
        repo.join("lane.toml"),
        format!(
            "{manifest}[data.config]\nkind = \"apollo\"\nurl = \"{}\"\nenv = \"APOLLO_META\"\n\
             app = \"cart\"\ntoken_env = \"CART_APOLLO_TOKEN\"\n\
             [data.sessions]\nkind = \"redis\"\nurl = \"{redis_url}\"\nenv = \"SESSIONS_URL\"\n\
             prefix_env = \"SESSIONS_PREFIX\"\n",
            apollo.url()
        ),
    )
    .expect("temp dir is writable");
    sandbox.git(&repo, &["commit", "-qam", "apollo binding"]);
    let mut c = Client::spawn(&mut sandbox);
    c.open_folder(file_uri(&repo), "b");
    let none = c.call(
        "workspace/executeCommand",
        json!({"command": "lane.data.ls", "arguments": []}),
    );
    assert_eq!(none, json!([]), "no lane owns data yet");
    c.call(
        "workspace/executeCommand",
        json!({"command": "lane.deployCurrentBranch", "arguments": [{"lane": "data-l"}]}),
    );
    assert!(apollo.has_cluster("DEV", "cart", "lane-data-l"));
    for k in [
        "lane:data-l:a",
        "lane:data-l:b",
        "lane:data-l:c",
        "lane:data-lx:a",
        "cart:1",
    ] {
        rt.block_on(r.cmd(&[b"SET", k.as_bytes(), b"value"]))
            .expect("SET");
    }
    let rows = c.call(
        "workspace/executeCommand",
        json!({"command": "lane.data.ls", "arguments": [{}]}),
    );
    let all = rows.as_array().expect("an array");
    assert_eq!(all.len(), 2, "{rows:#}");
    let sessions = all
        .iter()
        .find(|r| r["binding"] == "sessions")
        .unwrap_or_else(|| panic!("{rows:#}"));
    assert_eq!(sessions["lane"], "data-l", "{rows:#}");
    assert_eq!(sessions["kind"], "redis", "{rows:#}");
    assert_eq!(sessions["target"], "lane:data-l:", "{rows:#}");
    assert_eq!(sessions["quota"], Value::Null, "{rows:#}");
    let size = sessions["size"].as_str().unwrap_or_default();
    assert!(
        size.starts_with("3 keys, ~") && size.ends_with(" bytes (approximate)"),
        "{rows:#}"
    );
    assert!(
        all.contains(&json!({
            "lane": "data-l",
            "binding": "config",
            "kind": "apollo",
            "target": "lane-data-l",
            "size": "0 items",
            "quota": null,
        })),
        "{rows:#}"
    );
    let other = c.call(
        "workspace/executeCommand",
        json!({"command": "lane.data.ls", "arguments": [{"lane": "other"}]}),
    );
    assert_eq!(other, json!([]));
    let id = c.command("lane.data.ls", json!({"colour": 1}));
    let resp = c.response(id, Duration::from_secs(30));
    assert!(resp["error"]["code"].is_i64(), "{resp}");
    assert!(
        resp["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("lane.data.ls: invalid arguments")),
        "{resp}"
    );
    c.call(
        "workspace/executeCommand",
        json!({"command": "lane.delete", "arguments": [{"lane": "data-l"}]}),
    );
    assert!(
        !apollo.has_cluster("DEV", "cart", "lane-data-l"),
        "deleting the lane deletes its cluster"
    );
    assert_eq!(
        rt.block_on(r.cmd(&[b"DBSIZE"])).expect("DBSIZE"),
        lane_data::redis::Reply::Int(2),
        "and its keys, not baseline's or another lane's"
    );
    rt.block_on(r.cmd(&[b"FLUSHDB"])).expect("FLUSHDB");
}

/// The MariaDB that `scripts/services.sh` starts (installed when missing): its URL.
fn mysql_server() -> String {
    service_url("LANE_TEST_MYSQL_URL")
}

/// The URL in `var` of the servers `scripts/services.sh` starts (installed when missing).
fn service_url(var: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services.sh");
    let up = Command::new(&script)
        .arg("all")
        .output()
        .expect("services.sh runs");
    assert!(
        up.status.success(),
        "scripts/services.sh all failed:\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let env = Command::new(&script)
        .arg("env")
        .output()
        .expect("services.sh env runs");
    let text = String::from_utf8_lossy(&env.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("export {var}=")))
        .unwrap_or_else(|| panic!("{var} in {text}"))
        .to_owned()
}

/// A progress-reporting command with the work-done token `token`.
fn command_with_token(c: &mut Client, command: &str, args: Value, token: &str) -> i64 {
    c.request(
        "workspace/executeCommand",
        json!({"command": command, "arguments": [args], "workDoneToken": token}),
    )
}

/// The `$/progress` values sent under `token`, in order, up to and including its `end`.
fn progress_of(c: &mut Client, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let m = c.wait_for(
            &format!("$/progress of {token}"),
            Duration::from_secs(30),
            |m| m["method"] == "$/progress" && m["params"]["token"] == token,
        );
        let value = m["params"]["value"].clone();
        let end = value["kind"] == "end";
        out.push(value);
        if end {
            return out;
        }
    }
}

/// Issue 10: `lane.data.export | backup | backups | restore | import` over the wire against a
/// real MariaDB: a lane's rows go to a file and to a backup, the backup is listed and restores
/// the rows after they changed, a corrupt file is a clear error that leaves the data as it was,
/// each operation reports work-done progress ending with its outcome, and
/// `window/workDoneProgress/cancel` stops an import with the data as it was.
#[test]
fn lane_data_export_backup_restore_and_import_over_the_wire() {
    use lane_data::mysql::{Mysql, quote};
    let mysql_url = mysql_server();
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let db = format!("lsd_{}", std::process::id());
    let q = quote(&db);
    let m = rt.block_on(Mysql::connect(&mysql_url)).expect("MariaDB");
    rt.block_on(m.execute(&[
        &format!("DROP DATABASE IF EXISTS {q}"),
        &format!("CREATE DATABASE {q}"),
        &format!("CREATE TABLE {q}.t (id INT PRIMARY KEY, v VARCHAR(40))"),
        &format!("INSERT INTO {q}.t VALUES (1, 'base')"),
    ]))
    .expect("the baseline database");

    let mut sandbox = Sandbox::new("lsp-data-transfer", "48500-48599");
    let repo = sandbox.repo("true");
    let manifest = std::fs::read_to_string(repo.join("lane.toml")).expect("lane.toml");
    std::fs::write(
        repo.join("lane.toml"),
        format!(
            "{manifest}[data.orders]\nkind = \"mysql\"\nurl = \"{mysql_url}/{db}\"\n\
             env = \"ORDERS_DSN\"\n"
        ),
    )
    .expect("temp dir is writable");
    sandbox.git(&repo, &["commit", "-qam", "mysql binding"]);
    let mut c = Client::spawn(&mut sandbox);
    c.open_folder(file_uri(&repo), "b");
    c.call(
        "workspace/executeCommand",
        json!({"command": "lane.deployCurrentBranch", "arguments": [{"lane": "data-t"}]}),
    );
    let lane_db = format!("{db}__lane_data_t");
    let lq = quote(&lane_db);
    let rows = |m: &Mysql| {
        rt.block_on(m.column(&format!(
            "SELECT CONCAT(id, ':', v) FROM {lq}.t ORDER BY id"
        )))
        .expect("the lane's table")
    };
    rt.block_on(m.execute(&[&format!("INSERT INTO {lq}.t VALUES (2, 'lane')")]))
        .expect("a lane write");
    let mine = rows(&m);
    assert_eq!(mine.last().map(String::as_str), Some("2:lane"), "{mine:?}");

    // Export to a file, with progress.
    let file = sandbox.root.join("out/t.lanedata");
    let id = command_with_token(
        &mut c,
        "lane.data.export",
        json!({"lane": "data-t", "path": file.to_str().unwrap()}),
        "t-export",
    );
    let resp = c.response(id, Duration::from_secs(60));
    assert!(resp.get("error").is_none(), "{resp}");
    let out = &resp["result"];
    assert_eq!(out["lane"], "data-t", "{out:#}");
    assert_eq!(out["file"], file.to_str().unwrap(), "{out:#}");
    assert_eq!(out["bindings"][0]["binding"], "orders", "{out:#}");
    assert_eq!(out["bindings"][0]["kind"], "mysql", "{out:#}");
    assert_eq!(out["bindings"][0]["target"], lane_db.as_str(), "{out:#}");
    assert_eq!(out["bindings"][0]["items"], mine.len() as u64, "{out:#}");
    assert!(out["bytes"].as_u64().unwrap() > 0, "{out:#}");
    assert!(file.exists(), "the file is written");
    assert!(!sandbox.root.join("out/t.lanedata.partial").exists());
    let progress = progress_of(&mut c, "t-export");
    assert_eq!(progress[0]["kind"], "begin", "{progress:#?}");
    assert_eq!(progress[0]["cancellable"], true, "{progress:#?}");
    assert!(
        progress
            .iter()
            .any(|p| p["kind"] == "report" && p["message"].as_str().unwrap().contains("orders")),
        "a report names the binding: {progress:#?}"
    );
    let end = progress.last().unwrap()["message"].as_str().unwrap();
    assert!(end.contains("bytes in"), "{end}");

    // A backup, listed.
    let id = command_with_token(
        &mut c,
        "lane.data.backup",
        json!({"lane": "data-t"}),
        "t-backup",
    );
    let resp = c.response(id, Duration::from_secs(60));
    assert!(resp.get("error").is_none(), "{resp}");
    let backup_file = resp["result"]["file"].as_str().unwrap().to_owned();
    assert!(
        backup_file.starts_with(sandbox.root.join("home/backups/data-t").to_str().unwrap()),
        "{backup_file}"
    );
    assert_eq!(progress_of(&mut c, "t-backup")[0]["kind"], "begin");
    let list = c.call(
        "workspace/executeCommand",
        json!({"command": "lane.data.backups", "arguments": [{"lane": "data-t"}]}),
    );
    let list = list.as_array().expect("an array").clone();
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["lane"], "data-t");
    assert_eq!(list[0]["path"], backup_file.as_str());
    assert!(list[0]["bytes"].as_u64().unwrap() > 0);
    let name = list[0]["name"].as_str().unwrap().to_owned();
    let none = c.call(
        "workspace/executeCommand",
        json!({"command": "lane.data.backups", "arguments": [{"lane": "other"}]}),
    );
    assert_eq!(none, json!([]));

    // The data changes; restoring the backup brings it back.
    rt.block_on(m.execute(&[
        &format!("DELETE FROM {lq}.t"),
        &format!("INSERT INTO {lq}.t VALUES (3, 'changed')"),
    ]))
    .expect("a change");
    assert_eq!(rows(&m), ["3:changed"]);
    let id = command_with_token(
        &mut c,
        "lane.data.restore",
        json!({"lane": "data-t", "backup": name}),
        "t-restore",
    );
    let resp = c.response(id, Duration::from_secs(60));
    assert!(resp.get("error").is_none(), "{resp}");
    assert_eq!(resp["result"]["file"], backup_file.as_str());
    assert_eq!(rows(&m), mine, "the restore brings the backed-up rows back");
    let progress = progress_of(&mut c, "t-restore");
    assert!(
        progress.iter().any(|p| p["kind"] == "report"),
        "{progress:#?}"
    );

    // A corrupt file: a clear error, the data as it was, the progress ends with the failure.
    let bad = sandbox.root.join("bad.lanedata");
    let mut bytes = std::fs::read(&file).expect("the export");
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&bad, &bytes).expect("temp dir is writable");
    let id = command_with_token(
        &mut c,
        "lane.data.import",
        json!({"lane": "data-t", "path": bad.to_str().unwrap()}),
        "t-import",
    );
    let resp = c.response(id, Duration::from_secs(60));
    let message = resp["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("corrupt"), "{resp}");
    assert!(
        resp["error"]["data"]["help"]
            .as_str()
            .is_some_and(|h| h.contains("lane data export")),
        "the CLI's help: {resp}"
    );
    assert_eq!(rows(&m), mine, "a failed import leaves the data");
    let end = progress_of(&mut c, "t-import").pop().unwrap();
    assert!(
        end["message"].as_str().unwrap().starts_with("failed: "),
        "{end}"
    );

    // The good file imports; an unknown lane and a relative path are clear errors.
    rt.block_on(m.execute(&[&format!("DELETE FROM {lq}.t")]))
        .expect("a change");
    c.call(
        "workspace/executeCommand",
        json!({"command": "lane.data.import", "arguments": [{"lane": "data-t", "path": file.to_str().unwrap()}]}),
    );
    assert_eq!(rows(&m), mine, "the export imports back");
    let id = c.command(
        "lane.data.export",
        json!({"lane": "nope", "path": file.to_str().unwrap()}),
    );
    let resp = c.response(id, Duration::from_secs(30));
    assert!(
        resp["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("lane `nope` does not exist")),
        "{resp}"
    );
    let id = c.command(
        "lane.data.export",
        json!({"lane": "data-t", "path": "rel/x.lanedata"}),
    );
    let resp = c.response(id, Duration::from_secs(30));
    assert!(
        resp["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not an absolute local path")),
        "{resp}"
    );

    // window/workDoneProgress/cancel stops an import (staging a large file takes seconds; an
    // export of the same rows is too quick to catch): the data stays as it was.
    rt.block_on(m.execute(&[&format!(
        "INSERT INTO {lq}.t SELECT seq, REPEAT('x', 30) FROM {q}.seq_10_to_300000"
    )]))
    .expect("many rows");
    let big = sandbox.root.join("big.lanedata");
    let cancelled = |c: &mut Client, command: &str, args: Value, token: &str| -> Value {
        let id = command_with_token(c, command, args, token);
        c.wait_for(
            &format!("a report of {token}"),
            Duration::from_secs(60),
            |m| {
                m["method"] == "$/progress"
                    && m["params"]["token"] == token
                    && m["params"]["value"]["kind"] == "report"
            },
        );
        c.notify("window/workDoneProgress/cancel", json!({"token": token}));
        let resp = c.response(id, Duration::from_secs(60));
        let end = progress_of(c, token).pop().unwrap();
        assert!(end["message"].as_str().unwrap().contains("cancel"), "{end}");
        resp
    };
    let out = c.call(
        "workspace/executeCommand",
        json!({"command": "lane.data.export", "arguments": [{"lane": "data-t", "path": big.to_str().unwrap()}]}),
    );
    let many = out["bindings"][0]["items"].as_u64().unwrap();
    assert!(many > 290_000, "{out:#}");
    rt.block_on(m.execute(&[&format!("DELETE FROM {lq}.t WHERE id >= 10")]))
        .expect("a change");
    let resp = cancelled(
        &mut c,
        "lane.data.import",
        json!({"lane": "data-t", "path": big.to_str().unwrap()}),
        "t-cancel-import",
    );
    assert_eq!(resp["error"]["data"]["code"], "cancelled", "{resp}");
    assert_eq!(rows(&m), mine, "a cancelled import leaves the data");

    c.call(
        "workspace/executeCommand",
        json!({"command": "lane.delete", "arguments": [{"lane": "data-t"}]}),
    );
    assert!(
        !rt.block_on(m.database_exists(&lane_db)).unwrap(),
        "the lane's database goes with the lane"
    );
    rt.block_on(m.execute(&[&format!("DROP DATABASE IF EXISTS {q}")]))
        .expect("cleanup");
}
