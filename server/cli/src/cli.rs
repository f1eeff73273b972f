//! Command-line definitions. Everything here is parsing; behaviour lives in `commands`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "lane",
    version,
    about = "Release lanes: test your branch inside a shared dev environment",
    long_about = "Release lanes (泳道): deploy personal versions of services, built from your current \
git branch, into a lane. Requests carrying the lane id reach the lane's versions and fall back to \
baseline for every other service.\n\nExit codes: 0 ok, 1 internal error, 2 invalid input, 3 not \
found, 4 conflict, 5 not the owner, 6 build/start/health failed, 7 backend unavailable, 8 trace \
found a hop that lost the lane, 130 cancelled.",
    propagate_version = true
)]
pub struct Cli {
    /// More logging on stderr (-v info, -vv debug). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Where lanes live: local, consul or kubernetes. Default: `[backend] kind` of the nearest
    /// lane.toml, else local.
    #[arg(long, global = true, env = "LANE_BACKEND", value_name = "KIND")]
    pub backend: Option<String>,
    /// The kubeconfig context of the kubernetes backend. Default: `[backend] context` of the
    /// nearest lane.toml, else the kubeconfig's current context (or in-cluster).
    #[arg(long, global = true, env = "LANE_CONTEXT", value_name = "CONTEXT")]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone, Copy, Default)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the workspace's service, branch, active lane and every lane.
    Status(JsonFlag),
    /// List lanes with their services, health and expiry.
    Ls(JsonFlag),
    /// Create a lane.
    Create {
        /// Lane id: lowercase letters, digits and `-`, 1–40 characters.
        lane: String,
        /// Stack the lane on a parent lane: requests fall back to the parent before baseline.
        #[arg(long)]
        parent: Option<String>,
        /// Lifetime, like `2h`, `30m`, `3d` (default 24h).
        #[arg(long)]
        ttl: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Delete a lane with everything it owns.
    Rm {
        lane: String,
        /// Delete even if someone else owns it, or lanes are stacked on it.
        #[arg(long)]
        force: bool,
        /// Print what would be removed of the lane's data (the bindings of the lane.toml here),
        /// and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Give a lane more time.
    Extend {
        lane: String,
        /// How much longer, like `2h` (default 24h).
        #[arg(long, default_value = "24h")]
        by: String,
        #[arg(long)]
        force: bool,
    },
    /// Build the current branch of the repo you stand in and deploy it into a lane.
    Deploy {
        /// The lane (created if missing). Default: the active lane.
        #[arg(long)]
        lane: Option<String>,
        /// When the lane is created: its parent.
        #[arg(long)]
        parent: Option<String>,
        /// When the lane is created: its lifetime.
        #[arg(long)]
        ttl: Option<String>,
        /// Deploy into someone else's lane.
        #[arg(long)]
        force: bool,
        /// The service repository (default: the current directory).
        #[arg(long, short = 'C')]
        dir: Option<PathBuf>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Choose the lane your own requests enter (`baseline` turns it off).
    Switch { lane: String },
    /// A local HTTP proxy that adds the active lane's header to requests sent through it.
    Proxy {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:4081")]
        listen: SocketAddr,
        /// Use this lane instead of following the active lane.
        #[arg(long)]
        lane: Option<String>,
    },
    /// Move a personal version to another lane.
    Assign {
        /// Service id `<app>.<proc>`.
        service: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        force: bool,
    },
    /// Send a request with a lane id and show, hop by hop, which versions served it.
    Trace {
        /// A URL (`http://a.demo.localhost:4080/`) or a service id (`demo.a`) to call via the router.
        target: String,
        /// The lane to send (default: the active lane).
        #[arg(long)]
        lane: Option<String>,
        /// Send the lane as W3C `baggage: lane=<id>` (what OpenTelemetry's baggage propagator
        /// forwards) instead of the lane header.
        #[arg(long)]
        baggage: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Reclaim expired lanes and anything orphaned.
    Gc(JsonFlag),
    /// Every change to a lane, oldest first: create, deploy, assign, switch, extend, delete,
    /// reclaim, with who and why (kept after the lane is deleted for LANE_HISTORY_KEEP, default 7d).
    History {
        lane: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Run baseline versions.
    Baseline {
        #[command(subcommand)]
        command: BaselineCommand,
    },
    /// Stop the agent and everything it runs.
    Down,
    /// Print a shell completion script: `lane completions bash > ~/.local/share/bash-completion/completions/lane`,
    /// `lane completions zsh > ~/.zfunc/_lane`, `lane completions fish > ~/.config/fish/completions/lane.fish`.
    Completions {
        /// bash, zsh or fish.
        shell: CompletionShell,
    },
    /// Run the three lane scenarios end to end on this machine, then clean up.
    Demo,
    /// Run a router of its own that follows the local agent's lanes (the agent runs one already),
    /// or, with `--registry consul`, the lanes and instances of a Consul datacenter
    /// (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, …).
    Router {
        #[arg(long, default_value = "127.0.0.1:4090")]
        listen: SocketAddr,
        /// The lane header it reads (the W3C `baggage` entry `lane=` is read too).
        #[arg(long, env = "LANE_HEADER", default_value = "x-lane")]
        lane_header: String,
        /// Forward a request that carries the lane header with `baggage: lane=<id>` too, for
        /// services that propagate only OpenTelemetry baggage (also LANE_HEADER_TO_BAGGAGE=1).
        #[arg(long)]
        header_to_baggage: bool,
        /// Where the table comes from: `local` (the lane agent) or `consul`.
        #[arg(long, default_value = "local")]
        registry: String,
        /// The Consul name prefix (`gaia` in `gaia.<app>.<proc>`), with `--registry consul`.
        #[arg(long, default_value = "gaia")]
        prefix: String,
    },
    /// The Kubernetes operator: reconciles Lanes into lane Deployments, DestinationRules and one
    /// merged VirtualService per host (deploy/operator.yaml runs it in a cluster).
    Operator {
        /// The kubeconfig to use. Default: KUBECONFIG, else ~/.kube/config, else the in-cluster
        /// service account.
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// A namespace to watch and write (repeatable); all namespaces when omitted.
        #[arg(long = "namespace", short = 'n', value_name = "NAMESPACE")]
        namespaces: Vec<String>,
        /// The lane header the VirtualServices match (the W3C `baggage` entry `lane=` is matched too).
        #[arg(long, env = "LANE_HEADER", default_value = "x-lane")]
        lane_header: String,
        #[command(flatten)]
        election: OperatorElection,
    },
    /// Lanes' own data (MySQL databases, Redis databases) from `[data.<name>]` bindings.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// The merged VirtualService and DestinationRule the operator would make for a host, read
    /// from the cluster without changing it.
    Route {
        #[command(subcommand)]
        command: RouteCommand,
    },
    /// The IDE daemon: the Language Server Protocol over stdio, for the VS Code and JetBrains plugins.
    Lsp {
        /// Print a JSON description of the daemon's commands, requests, notifications and their
        /// shapes, then exit (used by the IDE plugins' drift tests).
        #[arg(long, hide = true)]
        describe: bool,
    },
    /// The per-user agent that runs local lanes and their router. Bare `lane agent` is what other
    /// commands start on demand; `lane agent install` has a supervisor (systemd, launchd) keep it
    /// running.
    Agent {
        #[command(subcommand)]
        command: Option<AgentCommand>,
    },
    /// The sample service used by `lane demo` and the tests.
    #[command(hide = true)]
    SampleService {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "demo")]
        app: String,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        next: Option<String>,
        #[arg(long)]
        router: Option<SocketAddr>,
        #[arg(long)]
        drop_lane_header: bool,
        #[arg(long, env = "LANE_HEADER", default_value = "x-lane")]
        lane_header: String,
    },
}

/// How replicas of `lane operator` elect the one that writes (a `coordination.k8s.io/v1` Lease).
#[derive(Debug, Args)]
pub struct OperatorElection {
    /// Reconcile without taking the Lease (only when exactly one operator runs).
    #[arg(long)]
    pub no_leader_election: bool,
    /// The Lease's namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "lane-system")]
    pub lease_namespace: String,
    /// The Lease's name.
    #[arg(long, default_value = "lane-operator")]
    pub lease_name: String,
    /// This replica's identity in the Lease. Default: POD_NAME (else the host name) and the
    /// process id.
    #[arg(long)]
    pub identity: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Run the agent in the foreground, for a supervisor. If an agent runs already it waits, and
    /// takes over at once when that one dies without stopping cleanly (killed or crashed).
    Run,
    /// Write a systemd user unit (Linux) or a launchd agent (macOS) that runs `lane agent run` and
    /// starts it again when it dies, then enable and start it (or say what to run).
    Install {
        /// Print the unit (or plist) instead of writing it.
        #[arg(long)]
        print: bool,
        /// Which supervisor: systemd or launchd (default: launchd on macOS, else systemd).
        #[arg(long, value_name = "KIND")]
        supervisor: Option<SupervisorKind>,
    },
    /// Stop and remove what `lane agent install` wrote.
    Uninstall {
        /// Which supervisor: systemd or launchd (default: launchd on macOS, else systemd).
        #[arg(long, value_name = "KIND")]
        supervisor: Option<SupervisorKind>,
    },
}

/// The service managers `lane agent install` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SupervisorKind {
    Systemd,
    Launchd,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// What each lane owns: binding, kind, its own copy, size and quota (sizes and quotas of the
    /// bindings in the lane.toml around the current directory).
    Ls(JsonFlag),
    /// Write a lane's data (all its bindings, or one) to a lane data file.
    Export {
        lane: String,
        /// Only this binding (default: every binding lane can export).
        binding: Option<String>,
        /// The file to write (written as FILE.partial and renamed when complete).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Replace a lane's data with a lane data file's, atomically per binding.
    #[command(override_usage = "lane data import <LANE> [BINDING] <FILE>")]
    Import {
        lane: String,
        /// `[BINDING] FILE`: only that binding of the file, or all of them.
        #[arg(value_name = "BINDING|FILE", num_args = 1..=2, required = true)]
        args: Vec<String>,
        /// Replace the data of a lane someone else owns.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Back a lane's data up under the state dir (`$LANE_HOME/backups/<lane>/`).
    Backup {
        lane: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// The backups kept under the state dir (of one lane, or all).
    Backups {
        lane: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Replace a lane's data with one of its backups (default: the latest).
    Restore {
        lane: String,
        /// A backup's name as `lane data backups` lists it.
        backup: Option<String>,
        /// Replace the data of a lane someone else owns.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Run the baseline of every service listed in a workspace file.
    Up {
        /// The workspace file (default: ./lane-workspace.toml).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Bring baseline to what production runs now, and print each followed service's drift.
    /// Local: fetch each followed ref (`follow` in lane-workspace.toml), check it, and roll
    /// baseline forward where it is behind; exit 6 when a service is left drifting (its
    /// roll-forward failed; the old version serves). Kubernetes: the operator syncs every
    /// LaneEnvironment of the lanes' namespaces.
    Sync(JsonFlag),
}

/// Where `lane route` reads: the same scope and header as `lane operator`.
#[derive(Debug, Args)]
pub struct RouteScope {
    /// A service id `<app>.<proc>` or its host `<proc>.<app>.svc.cluster.local`.
    pub host: String,
    /// The kubeconfig to use. Default: KUBECONFIG, else ~/.kube/config, else the in-cluster
    /// service account.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// A namespace the operator watches (repeatable); all namespaces when omitted.
    #[arg(long = "namespace", short = 'n', value_name = "NAMESPACE")]
    pub namespaces: Vec<String>,
    /// The lane header the VirtualServices match.
    #[arg(long, env = "LANE_HEADER", default_value = "x-lane")]
    pub lane_header: String,
}

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Print the VirtualService and DestinationRule the plan wants for the host, as YAML, and the
    /// conflicts that stop them.
    Show {
        #[command(flatten)]
        scope: RouteScope,
    },
    /// A unified diff from the host's VirtualService and DestinationRule in the cluster to the
    /// ones the plan wants. Exit 0 when equal, 1 when they differ, 4 when the plan reports a
    /// conflict for the host.
    Diff {
        #[command(flatten)]
        scope: RouteScope,
        /// Preview this lane with `--image` as its version of the service.
        #[arg(long, requires = "image", value_name = "LANE")]
        lane: Option<String>,
        /// The image of the previewed lane version.
        #[arg(long, requires = "lane", value_name = "IMAGE")]
        image: Option<String>,
    },
}

/// The shells `lane completions` writes a script for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}
