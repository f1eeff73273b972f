//! The agent's control socket: who may use it (owner only, whatever the umask) and which clients
//! it answers (its own protocol version; `shutdown` from any).

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use common::TestEnv;

/// `lane args…` with this test's environment, run by `sh` under `umask 000`.
fn under_umask_000(env: &TestEnv, args: &[&str]) -> std::process::Output {
    let lane = env.command(&env.root, args);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"umask 000; exec "$0" "$@""#)
        .arg(&env.bin)
        .args(args)
        .current_dir(&env.root);
    for (k, v) in lane.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.output().expect("sh runs")
}

#[test]
fn the_state_dir_and_the_socket_are_owner_only_whatever_the_umask() {
    let env = TestEnv::new("umask", 40);
    // The agent creates the state dir itself.
    std::fs::remove_dir_all(&env.home).unwrap();
    let out = under_umask_000(&env, &["status"]);
    assert!(out.status.success(), "{out:?}");

    let agent = env.agent_pid().expect("an agent runs");
    let umask = std::fs::read_to_string(format!("/proc/{agent}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_owned()));
    assert_eq!(
        umask.as_deref(),
        Some("0000"),
        "the agent runs under the permissive umask"
    );
    let dir = std::fs::metadata(&env.home).unwrap();
    assert_eq!(dir.permissions().mode() & 0o7777, 0o700, "state dir");
    let sock = std::fs::metadata(env.home.join("agent.sock")).unwrap();
    assert!(sock.file_type().is_socket());
    assert_eq!(sock.permissions().mode() & 0o7777, 0o600, "control socket");

    // A state dir that exists with looser permissions is made owner-only by the next agent.
    env.ok(&["down"]);
    std::fs::set_permissions(&env.home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = under_umask_000(&env, &["status"]);
    assert!(out.status.success(), "{out:?}");
    let dir = std::fs::metadata(&env.home).unwrap();
    assert_eq!(dir.permissions().mode() & 0o7777, 0o700, "state dir");
    let sock = std::fs::metadata(env.home.join("agent.sock")).unwrap();
    assert_eq!(sock.permissions().mode() & 0o7777, 0o600, "control socket");
    env.finish();
}

/// One raw HTTP/1.1 request on the agent's socket; the whole reply as text.
fn raw(env: &TestEnv, op: &str, version: Option<&str>) -> String {
    let mut s = UnixStream::connect(env.home.join("agent.sock")).expect("connect to the agent");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let header = version.map_or(String::new(), |v| format!("lane-protocol: {v}\r\n"));
    let req = format!(
        "POST /{op} HTTP/1.1\r\nhost: lane-agent\r\ncontent-type: application/json\r\n\
         content-length: 4\r\nconnection: close\r\n{header}\r\nnull"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply
}

#[test]
fn a_client_of_another_protocol_version_is_told_both_versions_and_can_still_stop_the_agent() {
    let env = TestEnv::new("handshake", 41);
    env.ok(&["status"]);

    let ok = raw(&env, "status", Some("2"));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("lane-protocol: 2"), "{ok}");
    assert!(ok.contains("{\"ok\":"), "{ok}");

    let newer = raw(&env, "status", Some("999"));
    assert!(newer.starts_with("HTTP/1.1 409"), "{newer}");
    assert!(newer.contains("lane-protocol: 2"), "{newer}");
    for text in ["agent protocol 999", "agent speaks 2", "lane down"] {
        assert!(newer.contains(text), "says `{text}`: {newer}");
    }
    let older = raw(&env, "deploy", None);
    assert!(older.starts_with("HTTP/1.1 409"), "{older}");
    assert!(
        older.contains("agent protocol 1 (from before versioned agents)"),
        "{older}"
    );
    let garbage = raw(&env, "gc", Some("two"));
    assert!(garbage.contains("agent protocol `two`"), "{garbage}");

    // `shutdown` is answered whatever the version: `lane down` of any version stops any agent.
    let agent = env.agent_pid().expect("an agent runs");
    let bye = raw(&env, "shutdown", Some("999"));
    assert!(bye.starts_with("HTTP/1.1 200"), "{bye}");
    env.wait_for("the agent to stop", Duration::from_secs(20), || {
        (!common::alive(agent)).then_some(())
    });
    // The next command starts an agent again.
    env.ok(&["status"]);
    assert_ne!(env.agent_pid(), Some(agent));
    env.finish();
}
