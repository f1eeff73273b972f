//! `lane agent install` / `uninstall`: the per-user agent as a user service that a supervisor
//! (a systemd user unit on Linux, a launchd agent on macOS) starts again when it dies.
//!
//! The service runs `lane agent run`: the agent in the foreground, which waits for an agent that
//! already runs and takes over the moment it dies uncleanly. What makes it safe to supervise:
//! - restart on failure only (systemd `Restart=on-failure`, launchd `KeepAlive` with
//!   `SuccessfulExit = false`): a SIGKILL or a crash restarts it; `lane down`, SIGTERM and the
//!   idle exit (`LANE_AGENT_IDLE`) exit 0 and leave it stopped, so the supervisor never loops on
//!   an agent that wants to stop. The next `lane` command starts it again through the
//!   supervisor (`agent.supervisor` in the state dir holds the command);
//! - the supervisor stops only the agent itself (systemd `KillMode=process`, launchd
//!   `AbandonProcessGroup`): the instances it runs live in their own process groups, and the
//!   next agent adopts the healthy ones instead of finding them killed with it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use lane_local::StateDir;

use crate::cli::SupervisorKind;

/// The systemd unit's name.
pub const SYSTEMD_UNIT: &str = "lane-agent.service";
/// The launchd job's label.
pub const LAUNCHD_LABEL: &str = "dev.lane.agent";

/// What the unit runs, and with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The `lane` binary.
    pub exe: PathBuf,
    /// The state dir (`LANE_HOME` of the service).
    pub state_dir: PathBuf,
    /// Environment the agent needs, besides `LANE_HOME`.
    pub env: Vec<(String, String)>,
}

impl ServiceSpec {
    fn log(&self) -> PathBuf {
        StateDir::new(self.state_dir.clone()).agent_log()
    }
}

/// The environment the service keeps from the shell that installs it: the agent's own settings
/// (`LANE_*`, but not those of a lane command or an instance), `PATH` (builds and run commands
/// find their tools) and `RUST_LOG`. Sorted, so the unit is the same for the same environment.
pub fn captured_env(vars: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    const NOT_THE_AGENTS: [&str; 6] = [
        "LANE_HOME",
        "LANE_BACKEND",
        "LANE_CONTEXT",
        "LANE_INSTANCE",
        lane_local::supervisor::INSTANCE_MARKER,
        lane_local::supervisor::BUILD_MARKER,
    ];
    let mut env: Vec<_> = vars
        .into_iter()
        .filter(|(k, _)| {
            (k.starts_with("LANE_") && !NOT_THE_AGENTS.contains(&k.as_str()))
                || k == "PATH"
                || k == "RUST_LOG"
        })
        .collect();
    env.sort();
    env
}

/// Text that goes into a unit file or plist cannot hold a line break or a NUL.
fn check_value(what: &str, v: &str) -> anyhow::Result<()> {
    if v.contains(['\n', '\r', '\0']) {
        bail!("{what} holds a line break or NUL character; a service file cannot carry it");
    }
    Ok(())
}

fn check(spec: &ServiceSpec) -> anyhow::Result<()> {
    let exe = spec
        .exe
        .to_str()
        .context("the lane binary's path is not UTF-8")?;
    check_value("the lane binary's path", exe)?;
    let home = spec
        .state_dir
        .to_str()
        .context("the state dir is not UTF-8")?;
    check_value("the state dir", home)?;
    for (k, v) in &spec.env {
        check_value(k, v)?;
    }
    Ok(())
}

/// A systemd word in double quotes: `\` and `"` escaped, `%` doubled (specifiers), and for
/// `ExecStart` `$` doubled (variable expansion).
fn systemd_quote(s: &str, exec: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' if exec => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The systemd user unit.
pub fn systemd_unit(spec: &ServiceSpec) -> anyhow::Result<String> {
    check(spec)?;
    let exe = spec.exe.display().to_string();
    let home = spec.state_dir.display().to_string();
    // Not quoted (systemd takes the rest of the line as the path), but specifiers escaped.
    let log = spec.log().display().to_string().replace('%', "%%");
    let mut u = String::new();
    let _ = writeln!(
        u,
        "# Written by `lane agent install`; `lane agent uninstall` removes it."
    );
    let _ = writeln!(u, "[Unit]");
    let _ = writeln!(
        u,
        "Description=lane agent: local release lanes and their router ({home})"
    );
    // Up to 20 restarts in 30 s before systemd gives up on an agent that cannot start.
    let _ = writeln!(u, "StartLimitIntervalSec=30");
    let _ = writeln!(u, "StartLimitBurst=20");
    let _ = writeln!(u);
    let _ = writeln!(u, "[Service]");
    let _ = writeln!(u, "Type=simple");
    let _ = writeln!(u, "ExecStart={} agent run", systemd_quote(&exe, true));
    let _ = writeln!(
        u,
        "# A crash or a kill restarts it; `lane down`, SIGTERM and the idle exit (exit 0) do not."
    );
    let _ = writeln!(u, "Restart=on-failure");
    let _ = writeln!(u, "RestartSec=200ms");
    let _ = writeln!(
        u,
        "# Stop only the agent: it stops its instances itself, and when it dies they keep running\n\
         # for the next agent to adopt."
    );
    let _ = writeln!(u, "KillMode=process");
    let _ = writeln!(u, "TimeoutStopSec=30");
    let _ = writeln!(
        u,
        "Environment={}",
        systemd_quote(&format!("LANE_HOME={home}"), false)
    );
    for (k, v) in &spec.env {
        let _ = writeln!(
            u,
            "Environment={}",
            systemd_quote(&format!("{k}={v}"), false)
        );
    }
    let _ = writeln!(u, "StandardOutput=append:{log}");
    let _ = writeln!(u, "StandardError=append:{log}");
    let _ = writeln!(u);
    let _ = writeln!(u, "[Install]");
    let _ = writeln!(u, "WantedBy=default.target");
    Ok(u)
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The launchd agent's property list.
pub fn launchd_plist(spec: &ServiceSpec) -> anyhow::Result<String> {
    check(spec)?;
    let exe = xml(&spec.exe.display().to_string());
    let log = xml(&spec.log().display().to_string());
    let mut p = String::new();
    p.push_str(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \
         \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <!-- Written by `lane agent install`; `lane agent uninstall` removes it. -->\n\
         <plist version=\"1.0\">\n<dict>\n",
    );
    let _ = writeln!(p, "  <key>Label</key>\n  <string>{LAUNCHD_LABEL}</string>");
    let _ = writeln!(
        p,
        "  <key>ProgramArguments</key>\n  <array>\n    <string>{exe}</string>\n    \
         <string>agent</string>\n    <string>run</string>\n  </array>"
    );
    let _ = writeln!(p, "  <key>EnvironmentVariables</key>\n  <dict>");
    let home = ("LANE_HOME".to_owned(), spec.state_dir.display().to_string());
    for (k, v) in std::iter::once(&home).chain(&spec.env) {
        let _ = writeln!(
            p,
            "    <key>{}</key>\n    <string>{}</string>",
            xml(k),
            xml(v)
        );
    }
    let _ = writeln!(p, "  </dict>");
    let _ = writeln!(p, "  <key>RunAtLoad</key>\n  <true/>");
    // Started again when it did not exit successfully: a kill or a crash, not `lane down` or the
    // idle exit.
    let _ = writeln!(
        p,
        "  <key>KeepAlive</key>\n  <dict>\n    <key>SuccessfulExit</key>\n    <false/>\n  </dict>"
    );
    let _ = writeln!(p, "  <key>ThrottleInterval</key>\n  <integer>1</integer>");
    // The instances outlive the agent, for the next one to adopt.
    let _ = writeln!(p, "  <key>AbandonProcessGroup</key>\n  <true/>");
    let _ = writeln!(p, "  <key>StandardOutPath</key>\n  <string>{log}</string>");
    let _ = writeln!(
        p,
        "  <key>StandardErrorPath</key>\n  <string>{log}</string>"
    );
    p.push_str("</dict>\n</plist>\n");
    Ok(p)
}

fn default_kind() -> SupervisorKind {
    if cfg!(target_os = "macos") {
        SupervisorKind::Launchd
    } else {
        SupervisorKind::Systemd
    }
}

/// Where the unit (or plist) goes: `$XDG_CONFIG_HOME/systemd/user/lane-agent.service`,
/// `~/Library/LaunchAgents/dev.lane.agent.plist`.
fn unit_path(kind: SupervisorKind) -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    match kind {
        SupervisorKind::Systemd => {
            let config = std::env::var_os("XDG_CONFIG_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| home.map(|h| h.join(".config")))
                .ok_or_else(|| anyhow!("neither XDG_CONFIG_HOME nor HOME is set"))?;
            Ok(config.join("systemd/user").join(SYSTEMD_UNIT))
        }
        SupervisorKind::Launchd => {
            let home = home.ok_or_else(|| anyhow!("HOME is not set"))?;
            Ok(home
                .join("Library/LaunchAgents")
                .join(format!("{LAUNCHD_LABEL}.plist")))
        }
    }
}

/// The command that has the supervisor start the agent now, for `agent.supervisor`.
fn start_command(kind: SupervisorKind) -> String {
    match kind {
        SupervisorKind::Systemd => format!("systemctl --user start {SYSTEMD_UNIT}"),
        SupervisorKind::Launchd => {
            format!("launchctl kickstart \"gui/$(id -u)/{LAUNCHD_LABEL}\"")
        }
    }
}

/// The commands that load and start the written unit.
fn enable_commands(kind: SupervisorKind, path: &Path) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    match kind {
        SupervisorKind::Systemd => vec![
            s(&["systemctl", "--user", "daemon-reload"]),
            s(&["systemctl", "--user", "enable", "--now", SYSTEMD_UNIT]),
        ],
        SupervisorKind::Launchd => vec![vec![
            "launchctl".into(),
            "bootstrap".into(),
            format!("gui/{}", uid()),
            path.display().to_string(),
        ]],
    }
}

fn disable_commands(kind: SupervisorKind, path: &Path) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    match kind {
        SupervisorKind::Systemd => vec![s(&[
            "systemctl",
            "--user",
            "disable",
            "--now",
            SYSTEMD_UNIT,
        ])],
        SupervisorKind::Launchd => vec![vec![
            "launchctl".into(),
            "bootout".into(),
            format!("gui/{}", uid()),
            path.display().to_string(),
        ]],
    }
}

fn uid() -> String {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "$(id -u)".into())
}

/// Runs `commands` in order; the first failure is returned with what it printed.
async fn run_all(commands: &[Vec<String>]) -> Result<(), String> {
    for c in commands {
        let out = tokio::process::Command::new(&c[0])
            .args(&c[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", c[0]))?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr);
            return Err(format!("`{}` failed: {}", c.join(" "), said.trim()));
        }
    }
    Ok(())
}

fn shown(commands: &[Vec<String>]) -> String {
    commands
        .iter()
        .map(|c| format!("  {}", c.join(" ")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The service as this process's environment describes it.
fn spec_from_env() -> anyhow::Result<ServiceSpec> {
    let exe = std::env::current_exe().context("cannot find the lane binary's own path")?;
    let state_dir = lane_local::default_state_dir()?;
    let state_dir = if state_dir.is_absolute() {
        state_dir
    } else {
        std::env::current_dir()?.join(state_dir)
    };
    Ok(ServiceSpec {
        exe,
        state_dir,
        env: captured_env(std::env::vars()),
    })
}

fn render(kind: SupervisorKind, spec: &ServiceSpec) -> anyhow::Result<String> {
    match kind {
        SupervisorKind::Systemd => systemd_unit(spec),
        SupervisorKind::Launchd => launchd_plist(spec),
    }
}

/// `lane agent install [--print]`.
pub async fn install(print: bool, kind: Option<SupervisorKind>) -> anyhow::Result<u8> {
    let kind = kind.unwrap_or_else(default_kind);
    let spec = spec_from_env()?;
    let text = render(kind, &spec)?;
    if print {
        print!("{text}");
        return Ok(0);
    }
    let path = unit_path(kind)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    let dir = StateDir::new(spec.state_dir.clone());
    dir.create()?;
    std::fs::write(dir.agent_supervisor(), format!("{}\n", start_command(kind)))
        .with_context(|| format!("cannot write {}", dir.agent_supervisor().display()))?;
    let enable = enable_commands(kind, &path);
    match run_all(&enable).await {
        Ok(()) => {
            println!(
                "the lane agent now runs under {} and is started again if it dies",
                supervisor_name(kind)
            );
            if let Some(pid) = running_agent(&dir) {
                println!(
                    "an agent started before runs now (pid {pid}); the supervised one takes over \
                     if it dies, and the next lane command after a `lane down` starts it supervised"
                );
            }
        }
        Err(e) => {
            println!(
                "{} cannot load it here ({e}).\nRun this in your login session to start it:\n{}\n\
                 Until then lane commands start the agent unsupervised, as before.",
                supervisor_name(kind),
                shown(&enable)
            );
        }
    }
    Ok(0)
}

/// The pid of the agent that runs for `dir`, if one does.
fn running_agent(dir: &StateDir) -> Option<u32> {
    let info: lane_local::AgentInfo =
        serde_json::from_slice(&std::fs::read(dir.agent_info()).ok()?).ok()?;
    lane_local::supervisor::pid_alive(info.pid).then_some(info.pid)
}

/// `lane agent uninstall`.
pub async fn uninstall(kind: Option<SupervisorKind>) -> anyhow::Result<u8> {
    let kind = kind.unwrap_or_else(default_kind);
    let path = unit_path(kind)?;
    let dir = StateDir::new(lane_local::default_state_dir()?);
    let _ = std::fs::remove_file(dir.agent_supervisor());
    if !path.exists() {
        println!(
            "no lane agent service is installed ({} does not exist)",
            path.display()
        );
        return Ok(0);
    }
    let disable = disable_commands(kind, &path);
    if let Err(e) = run_all(&disable).await {
        println!(
            "{} cannot unload it here ({e}); if it runs, stop it with:\n{}",
            supervisor_name(kind),
            shown(&disable)
        );
    }
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    println!("removed {}", path.display());
    if kind == SupervisorKind::Systemd {
        let _ = run_all(&[vec![
            "systemctl".into(),
            "--user".into(),
            "daemon-reload".into(),
        ]])
        .await;
    }
    Ok(0)
}

fn supervisor_name(kind: SupervisorKind) -> &'static str {
    match kind {
        SupervisorKind::Systemd => "systemd (user)",
        SupervisorKind::Launchd => "launchd",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            exe: PathBuf::from("/opt/lane 1/bin/lane"),
            state_dir: PathBuf::from("/home/al/.local/state/lane"),
            env: vec![
                ("LANE_ROUTER_ADDR".into(), "127.0.0.1:4080".into()),
                ("PATH".into(), "/usr/bin:/bin".into()),
            ],
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn the_systemd_unit_restarts_the_agent_on_failure_only_and_leaves_its_instances_running() {
        let unit = systemd_unit(&spec()).unwrap();
        let l = lines(&unit);
        for want in [
            "[Service]",
            "ExecStart=\"/opt/lane 1/bin/lane\" agent run",
            "Restart=on-failure",
            "RestartSec=200ms",
            "KillMode=process",
            "Environment=\"LANE_HOME=/home/al/.local/state/lane\"",
            "Environment=\"LANE_ROUTER_ADDR=127.0.0.1:4080\"",
            "Environment=\"PATH=/usr/bin:/bin\"",
            "StandardOutput=append:/home/al/.local/state/lane/agent.log",
            "WantedBy=default.target",
        ] {
            assert!(l.contains(&want), "{want} in:\n{unit}");
        }
        // Never `Restart=always`: an agent that exits 0 (lane down, idle) must stay stopped.
        assert!(!unit.contains("Restart=always"), "{unit}");
        let service = unit.find("[Service]").unwrap();
        assert!(unit.find("ExecStart").unwrap() > service);
        assert!(unit.find("[Install]").unwrap() > unit.find("KillMode").unwrap());
    }

    #[test]
    fn systemd_values_are_quoted_against_specifiers_and_expansion() {
        let mut s = spec();
        s.exe = PathBuf::from("/x/$HOME/100%/l\"ane");
        s.env = vec![("LANE_HEADER".into(), "x-%n\\".into())];
        let unit = systemd_unit(&s).unwrap();
        assert!(
            unit.contains("ExecStart=\"/x/$$HOME/100%%/l\\\"ane\" agent run"),
            "{unit}"
        );
        assert!(
            unit.contains("Environment=\"LANE_HEADER=x-%%n\\\\\""),
            "{unit}"
        );
    }

    #[test]
    fn the_launchd_plist_keeps_the_agent_alive_unless_it_exited_successfully() {
        let mut s = spec();
        s.env.push(("LANE_HEADER".into(), "x-<lane>&".into()));
        let plist = launchd_plist(&s).unwrap();
        for want in [
            "<key>Label</key>\n  <string>dev.lane.agent</string>",
            "<array>\n    <string>/opt/lane 1/bin/lane</string>\n    <string>agent</string>\n    <string>run</string>\n  </array>",
            "<key>LANE_HOME</key>\n    <string>/home/al/.local/state/lane</string>",
            "<key>LANE_ROUTER_ADDR</key>\n    <string>127.0.0.1:4080</string>",
            "<key>LANE_HEADER</key>\n    <string>x-&lt;lane&gt;&amp;</string>",
            "<key>KeepAlive</key>\n  <dict>\n    <key>SuccessfulExit</key>\n    <false/>\n  </dict>",
            "<key>RunAtLoad</key>\n  <true/>",
            "<key>AbandonProcessGroup</key>\n  <true/>",
            "<key>StandardErrorPath</key>\n  <string>/home/al/.local/state/lane/agent.log</string>",
        ] {
            assert!(plist.contains(want), "{want} in:\n{plist}");
        }
        assert!(plist.starts_with("<?xml version=\"1.0\""), "{plist}");
        assert!(plist.trim_end().ends_with("</plist>"), "{plist}");
        // Balanced: every dict and array closes.
        for tag in ["dict", "array"] {
            assert_eq!(
                plist.matches(&format!("<{tag}>")).count(),
                plist.matches(&format!("</{tag}>")).count(),
                "{tag}"
            );
        }
    }

    #[test]
    fn a_line_break_in_a_value_is_refused_not_written() {
        let mut s = spec();
        s.env
            .push(("LANE_HEADER".into(), "x\nExecStart=/bin/evil".into()));
        let err = systemd_unit(&s).unwrap_err().to_string();
        assert!(
            err.contains("LANE_HEADER") && err.contains("line break"),
            "{err}"
        );
        assert!(launchd_plist(&s).is_err());
    }

    #[test]
    fn the_service_keeps_the_agents_settings_and_path_but_not_a_commands_or_an_instances() {
        let vars = [
            ("LANE_ROUTER_ADDR", "127.0.0.1:5080"),
            ("LANE_AGENT_IDLE", "1h"),
            ("LANE_HOME", "/elsewhere"),
            ("LANE_BACKEND", "consul"),
            ("LANE_INSTANCE", "demo.b@x"),
            ("LANE_STATE_DIR", "/s"),
            ("LANE_BUILD", "1"),
            ("PATH", "/bin"),
            ("HOME", "/home/al"),
            ("RUST_LOG", "info"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let env = captured_env(vars);
        let keys: Vec<_> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["LANE_AGENT_IDLE", "LANE_ROUTER_ADDR", "PATH", "RUST_LOG"]
        );
    }
}
