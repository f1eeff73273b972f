//! Small things a CLI user expects: shell completions, and an agent that goes away on its own
//! when it has run nothing for `LANE_AGENT_IDLE`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::TestEnv;

#[test]
fn completions_for_bash_zsh_and_fish_complete_the_commands() {
    let env = TestEnv::new("completions", 124);
    // bash: the script loads in a real bash and completes `lane hi` to `history`, and
    // `lane completions ` to the three shells.
    let bash = env.ok(&["completions", "bash"]).stdout;
    let script = env.root.join("lane.bash");
    std::fs::write(&script, &bash).unwrap();
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; _lane lane '{}' '{}'; \
                 printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                script.display(),
                words
                    .iter()
                    .map(|w| format!("'{w}'"))
                    .collect::<Vec<_>>()
                    .join(" "),
                words.len() - 1,
                words.last().unwrap(),
                words[words.len() - 2],
            ))
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(complete("lane hi"), ["history"]);
    // The shells, after the options every command takes.
    let shells = complete("lane completions ");
    assert!(
        shells.ends_with(&["bash", "zsh", "fish"].map(String::from)),
        "{shells:?}"
    );
    assert_eq!(complete("lane completions z"), ["zsh"]);
    let deploy = complete("lane deploy --l");
    assert!(deploy.contains(&"--lane".to_owned()), "{deploy:?}");

    // zsh and fish: their scripts name the command and every subcommand.
    let zsh = env.ok(&["completions", "zsh"]).stdout;
    assert!(zsh.starts_with("#compdef lane"), "{zsh}");
    let fish = env.ok(&["completions", "fish"]).stdout;
    for cmd in ["deploy", "history", "completions", "switch", "baseline"] {
        assert!(zsh.contains(&format!("'{cmd}:")), "zsh lacks {cmd}");
        assert!(
            fish.contains(&format!("-a \"{cmd}\"")),
            "fish lacks {cmd}:\n{fish}"
        );
    }
    // Another shell is invalid input.
    let out = env.run(&["completions", "tcsh"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("bash, zsh, fish"), "{out}");
    env.finish();
}

#[test]
fn an_agent_that_runs_nothing_exits_after_its_idle_time() {
    let env = TestEnv::new("agent-idle", 125);
    let idle = [("LANE_AGENT_IDLE", "1s")];
    let out = env.run_in(&env.root, &["create", "feature-x"], &idle);
    assert_eq!(out.code, 0, "{out}");
    let agent = env.agent_pid().expect("the agent runs");
    // A lane keeps it: still there well after its idle time.
    std::thread::sleep(Duration::from_secs(3));
    assert!(common::alive(agent), "the agent stays while a lane exists");
    env.ok(&["rm", "feature-x"]);
    // Running nothing, it goes within its idle time (plus a housekeeping tick).
    env.wait_for("the idle agent to exit", Duration::from_secs(10), || {
        (!common::alive(agent)).then_some(())
    });
    assert!(!env.home.join("agent.json").exists(), "it cleaned up");
    assert!(!env.home.join("agent.sock").exists(), "it cleaned up");
    let log = std::fs::read_to_string(env.home.join("agent.log")).unwrap_or_default();
    assert!(log.contains("LANE_AGENT_IDLE"), "it said why:\n{log}");
    // The next command starts a new one (with the default idle time: it stays).
    let out = env.ok(&["ls", "--json"]);
    assert_eq!(out.json(), serde_json::json!([]));
    let next = env.agent_pid().expect("a new agent runs");
    assert_ne!(next, agent);
    // A bad setting is refused with the variable's name.
    env.ok(&["down"]);
    let out = env.run_in(&env.root, &["ls"], &[("LANE_AGENT_IDLE", "soon")]);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("LANE_AGENT_IDLE"), "{out}");
    env.finish();
}
