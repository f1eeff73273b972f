//! Something brings the agent back on its own (issue 12): `lane lsp` starts a new agent the moment
//! the old one is killed, and says so (`lane/agentRestarted`); `lane agent run` (what the
//! installed systemd unit or launchd agent runs) takes over from an agent that dies and leaves a
//! cleanly stopped one stopped; `lane agent install --print` prints the unit.

mod common;
mod load;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use common::{TestEnv, sample_manifest};
use serde_json::{Value, json};

fn pid_of(v: &serde_json::Value) -> u32 {
    v["placement"]["pid"].as_u64().expect("a pid") as u32
}

/// A real LSP client of `lane lsp` over stdio.
struct Lsp {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    seen: Vec<Value>,
}

impl Lsp {
    fn start(env: &TestEnv, folder: &std::path::Path) -> Lsp {
        let mut child = env
            .command(folder, &["lsp"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(env.root.join("lsp.err")).unwrap())
            .spawn()
            .expect("lane lsp starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut len = 0;
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
                        len = v.parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
                    return;
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
        });
        let mut lsp = Lsp {
            child,
            stdin,
            rx,
            seen: Vec::new(),
        };
        let uri = format!("file://{}", folder.display());
        lsp.send(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "processId": null, "rootUri": uri, "capabilities": {},
                "workspaceFolders": [{"uri": uri, "name": "b"}],
            }}),
        );
        lsp.wait_for("the initialize response", Duration::from_secs(20), |m| {
            m["id"] == 1
        });
        lsp.send(json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}));
        lsp
    }

    fn send(&mut self, msg: Value) {
        let body = serde_json::to_vec(&msg).unwrap();
        let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        out.extend_from_slice(&body);
        self.stdin.write_all(&out).unwrap();
        self.stdin.flush().unwrap();
    }

    fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(pos) = self.seen.iter().position(&pred) {
            return self.seen.remove(pos);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(msg) => {
                    if msg.get("method").is_some() && msg.get("id").is_some() {
                        let id = msg["id"].clone();
                        self.send(json!({"jsonrpc": "2.0", "id": id, "result": null}));
                    }
                    if pred(&msg) {
                        return msg;
                    }
                    self.seen.push(msg);
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no {what} within {timeout:?}; saw {:#?}", self.seen)
                }
                Err(RecvTimeoutError::Disconnected) => panic!("lane lsp closed stdout"),
            }
        }
    }

    fn notification(&mut self, method: &str, timeout: Duration) -> Value {
        self.wait_for(method, timeout, |m| m["method"] == method)["params"].clone()
    }

    fn exit(&mut self) {
        self.send(json!({"jsonrpc": "2.0", "id": 99, "method": "shutdown", "params": null}));
        self.send(json!({"jsonrpc": "2.0", "method": "exit", "params": null}));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
    }
}

impl Drop for Lsp {
    fn drop(&mut self) {
        // A test that failed half-way leaves no daemon behind to restart agents.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn listens(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
}

#[test]
fn a_sigkilled_agent_is_back_by_itself_under_lane_lsp_and_healthy_instances_keep_running() {
    let mut env = TestEnv::new("agent-supervise-lsp", 190);
    // The new agent's router listens where the old one's did.
    env.router_addr = format!("127.0.0.1:{}", common::free_port());
    let b = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    let ws = env.root.join("repos").join("lane-workspace.toml");
    std::fs::write(&ws, "[[service]]\npath = \"b\"\n").unwrap();
    env.ok(&["baseline", "up", "--file", ws.to_str().unwrap()]);
    env.branch(&b, "feature-x-branch");
    env.ok_in(&b, &["deploy", "--lane", "feature-x"]);
    let router = env.router();
    let status = env.status();
    let base_b = pid_of(&common::instance_in(&status, "baseline", "demo.b").unwrap());
    let lane_b = pid_of(&common::instance_in(&status, "feature-x", "demo.b").unwrap());

    let mut lsp = Lsp::start(&env, &b);
    lsp.notification("lane/statusChanged", Duration::from_secs(20));

    let lane_load = load::Load::start(router, "b.demo.localhost", &[("x-lane", "feature-x")], 2, 2);
    let base_load = load::Load::start(router, "b.demo.localhost", &[], 1, 1);
    std::thread::sleep(Duration::from_millis(500));

    let agent = env.agent_pid().expect("the agent runs");
    let killed = Instant::now();
    let killed_at = lane_load.started.elapsed();
    let base_killed_at = base_load.started.elapsed();
    common::kill(agent, "KILL");
    // Nobody runs a lane command: `lane lsp` alone brings the agent and its router back.
    let mut gone_seen = false;
    let back = loop {
        let up = listens(router);
        gone_seen |= !up;
        if gone_seen && up {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "the router was not back within 10 s; lane lsp said:\n{}",
            std::fs::read_to_string(env.root.join("lsp.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let back_at = killed_at + back;
    let base_back_at = base_killed_at + back;
    let restarted = lsp.notification("lane/agentRestarted", Duration::from_secs(10));
    let new_agent = env.agent_pid().expect("a new agent runs");
    assert_ne!(new_agent, agent);
    assert!(common::alive(new_agent));
    assert_eq!(restarted["error"], Value::Null, "{restarted:#}");
    assert_eq!(restarted["reason"], "died");
    assert_eq!(restarted["restarts"], 1);
    let message = restarted["message"].as_str().unwrap();
    assert!(
        message.starts_with("lane agent restarted (was killed or crashed; back in "),
        "{message}"
    );
    eprintln!(
        "SIGKILL of the agent under lane lsp: no router listened for {back:?}; \
         the daemon saw the agent gone and had a new one answering in {} ms",
        restarted["downMs"]
    );
    // A generous bound (the machine is shared); the figure is printed above.
    assert!(back < Duration::from_secs(5), "back in {back:?}");

    std::thread::sleep(Duration::from_millis(1000));
    let lane = lane_load.stop();
    let base = base_load.stop();

    // No healthy instance was restarted: the new agent adopted them as they were.
    let status = env.status();
    let now_b = common::instance_in(&status, "baseline", "demo.b").unwrap();
    assert_eq!(pid_of(&now_b), base_b, "baseline b adopted: {now_b:#}");
    assert_eq!(now_b["state"], "healthy");
    assert_eq!(now_b["restarts"], 0, "{now_b:#}");
    let now_lb = common::instance_in(&status, "feature-x", "demo.b").unwrap();
    assert_eq!(pid_of(&now_lb), lane_b, "the lane's b adopted: {now_lb:#}");
    assert_eq!(now_lb["state"], "healthy");

    // The status the IDE shows is the new agent's.
    lsp.wait_for("a status with the lane", Duration::from_secs(10), |m| {
        m["method"] == "lane/statusChanged" && m["params"]["backendError"].is_null()
    });

    // Failed requests: only those sent while no router listened (a scheduling slack of 250 ms on
    // the window's end, for a load thread that saw the refusal just before the probe connected).
    let slack = Duration::from_millis(250);
    let outside = |f: &[load::Failure], from: Duration, to: Duration| -> Vec<load::Failure> {
        f.iter()
            .filter(|x| x.at < from || x.at > to + slack)
            .cloned()
            .collect()
    };
    eprintln!(
        "lane load: {} requests, {} failed; baseline load: {} requests, {} failed; \
         all in the {back:?} window",
        lane.total(),
        lane.failures.len(),
        base.total(),
        base.failures.len()
    );
    assert!(lane.ok > 100 && base.ok > 50, "{lane:?} {base:?}");
    assert!(
        !lane.failures.is_empty(),
        "requests sent while no router listened fail (the test would not see a gap otherwise)"
    );
    let late = outside(&lane.failures, killed_at, back_at);
    assert!(
        late.is_empty(),
        "lane failures outside the window {killed_at:?}..{back_at:?}: {late:#?}"
    );
    let late = outside(&base.failures, base_killed_at, base_back_at);
    assert!(
        late.is_empty(),
        "baseline failures outside the window {base_killed_at:?}..{base_back_at:?}: {late:#?}"
    );
    // Refused while no router listened, or cut in flight by the kill (the dying router's
    // connections): nothing else, such as a 503 of an instance being restarted.
    let (mut refused, mut cut) = (0, 0);
    for f in lane.failures.iter().chain(&base.failures) {
        if f.what.starts_with("connect:") {
            refused += 1;
        } else {
            assert!(
                !f.what.starts_with("status"),
                "a failure other than no router listening: {f:?}"
            );
            cut += 1;
        }
    }
    eprintln!(
        "failed: {refused} refused while no router listened, {cut} cut in flight by the kill"
    );
    assert_eq!(
        lane.served_by.keys().collect::<Vec<_>>(),
        ["demo.b@feature-x"]
    );
    assert_eq!(
        base.served_by.keys().collect::<Vec<_>>(),
        ["demo.b@baseline"]
    );

    // `lane down` stays down: the daemon restarts only an agent that died.
    env.ok(&["down"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        env.agent_pid(),
        None,
        "lane lsp did not start a stopped agent"
    );
    assert!(!listens(router));
    lsp.exit();
    env.finish();
}

#[test]
fn lane_agent_run_takes_over_from_a_killed_agent_and_leaves_a_stopped_one_stopped() {
    let mut env = TestEnv::new("agent-supervise-run", 191);
    env.router_addr = format!("127.0.0.1:{}", common::free_port());
    let b = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    env.branch(&b, "feature-x-branch");
    env.ok_in(&b, &["deploy", "--lane", "feature-x"]);
    let router = env.router();
    let lane_b = pid_of(&env.instance("feature-x", "demo.b").unwrap());
    let first = env.agent_pid().expect("an agent started on demand");

    // What the installed unit runs: it waits while an agent runs.
    let supervised = env.spawn_in(&env.root, &["agent", "run"], &[]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        env.agent_pid(),
        Some(first),
        "it waits, it does not replace"
    );

    let killed = Instant::now();
    common::kill(first, "KILL");
    let back = loop {
        if env.agent_pid().is_some_and(|p| p != first) && listens(router) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "not back in 10 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    eprintln!("lane agent run took over from a SIGKILLed agent in {back:?}");
    assert_eq!(env.agent_pid(), Some(supervised.pid()));
    let now = env.instance("feature-x", "demo.b").unwrap();
    assert_eq!(pid_of(&now), lane_b, "adopted, not restarted: {now:#}");
    let reply = common::http_get(router, "b.demo.localhost", "/", &[("x-lane", "feature-x")]);
    assert_eq!(reply.served_by(), ["demo.b@feature-x"], "{reply:?}");

    // `lane down` stops it with exit 0: a supervisor restarting on failure only leaves it be.
    env.ok(&["down"]);
    let out = supervised.wait(Duration::from_secs(20));
    assert_eq!(out.code, 0, "{out}");

    // A supervised agent waiting behind one that is stopped cleanly does not take over.
    env.ok(&["status"]);
    let on_demand = env.agent_pid().unwrap();
    let waiting = env.spawn_in(&env.root, &["agent", "run"], &[]);
    std::thread::sleep(Duration::from_millis(500));
    env.ok(&["down"]);
    let out = waiting.wait(Duration::from_secs(20));
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains("stopped cleanly; not taking over"),
        "{out}"
    );
    assert!(!common::alive(on_demand));
    assert_eq!(env.agent_pid(), None);
    env.finish();
}

#[test]
fn lane_agent_install_print_shows_the_unit_and_the_plist_with_this_environment() {
    let env = TestEnv::new("agent-supervise-install", 192);
    let unit = env.ok(&["agent", "install", "--print", "--supervisor", "systemd"]);
    let bin = env.bin.display().to_string();
    let home = env.home.display().to_string();
    for want in [
        format!("ExecStart=\"{bin}\" agent run"),
        "Restart=on-failure".to_owned(),
        "KillMode=process".to_owned(),
        format!("Environment=\"LANE_HOME={home}\""),
        format!("Environment=\"LANE_PORT_RANGE={}\"", env.port_range()),
        format!("StandardOutput=append:{home}/agent.log"),
    ] {
        assert!(
            unit.stdout.lines().any(|l| l == want),
            "{want} in:\n{}",
            unit.stdout
        );
    }
    let plist = env.ok(&["agent", "install", "--print", "--supervisor", "launchd"]);
    for want in [
        format!("<string>{bin}</string>"),
        format!("<key>LANE_HOME</key>\n    <string>{home}</string>"),
        "<key>SuccessfulExit</key>\n    <false/>".to_owned(),
    ] {
        assert!(plist.stdout.contains(&want), "{want} in:\n{}", plist.stdout);
    }
    // Nothing was written by --print, and uninstall says there is nothing to remove.
    assert!(!env.root.join("config/systemd").exists());
    let out = env.ok(&["agent", "uninstall", "--supervisor", "systemd"]);
    assert!(
        out.stdout.contains("no lane agent service is installed"),
        "{out}"
    );
    let bad = env.run(&["agent", "install", "--supervisor", "runit"]);
    assert_eq!(bad.code, 2, "{bad}");
    assert!(bad.stderr.contains("runit"), "{bad}");
    env.finish();
}

#[test]
fn a_lane_command_starts_the_agent_through_the_installed_supervisor() {
    let env = TestEnv::new("agent-supervise-hint", 193);
    std::fs::create_dir_all(&env.home).unwrap();
    let hint = env.home.join("agent.supervisor");
    let started = env.root.join("supervisor.log");
    // A stand-in for `systemctl --user start lane-agent.service`: it starts `lane agent run`.
    std::fs::write(
        &hint,
        format!(
            "echo started >> '{}'; '{}' agent run >> '{}' 2>&1 < /dev/null &\n",
            started.display(),
            env.bin.display(),
            env.home.join("agent.log").display()
        ),
    )
    .unwrap();
    env.ok(&["status"]);
    let pid = env.agent_pid().expect("an agent runs");
    assert!(
        common::cmdline(pid).ends_with("agent run"),
        "{}",
        common::cmdline(pid)
    );
    assert_eq!(std::fs::read_to_string(&started).unwrap(), "started\n");

    // A supervisor that cannot start it (no user session): the agent starts detached, as before.
    env.ok(&["down"]);
    std::fs::write(&hint, "echo 'Failed to connect to bus' >&2; exit 1\n").unwrap();
    let out = env.ok(&["status"]);
    let pid = env.agent_pid().expect("an agent runs");
    assert!(
        common::cmdline(pid).ends_with(" agent"),
        "{}",
        common::cmdline(pid)
    );
    assert!(
        !out.stderr.contains("WARN"),
        "no warning on every command: {out}"
    );
    env.finish();
}
