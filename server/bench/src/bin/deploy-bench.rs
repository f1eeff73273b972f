//! Benchmark of what the working copy costs a deploy: `lane deploy` of a repository with many
//! files, with `snapshot = true` (the default: build and run from a git-synced copy) against
//! `snapshot = false` (in place), interleaved in the same run.
//!
//! ```text
//! cargo build --release -p lane -p lane-bench
//! target/release/deploy-bench [--lane-bin target/release/lane] [--files 5000] [--rounds 5]
//! ```
//!
//! Two repositories with the same `--files` files (4 KiB each, 100 per directory, committed) and a
//! sample service with a TCP health check differ only in `snapshot`. Round 0 deploys each into a
//! new lane; every later round first edits 10 files in each repo (uncommitted) and redeploys into
//! the same lane. A new version never builds in the copy the running one uses: rounds 0 and 1 each
//! make a copy from nothing (no `[build] cache` is declared, so nothing is carried over); from
//! round 2 on, a redeploy syncs the copy the replaced version freed (only changed files are
//! rewritten). The wall time of each `lane deploy` is recorded; the report gives both modes, the
//! ratio and the difference, which is the copy's cost, and for scale the time `cp -r` takes to copy
//! the same files in the same run (the disk's speed varies). It uses its own temporary `LANE_HOME`
//! and stops everything it started.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::git;

mod common;

struct Args {
    lane_bin: PathBuf,
    files: usize,
    rounds: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        lane_bin: common::default_lane_bin(),
        files: 5000,
        rounds: 5,
    };
    let mut flags = common::Flags::new();
    while let Some(a) = flags.next_flag() {
        match a.as_str() {
            "--lane-bin" => args.lane_bin = flags.value("--lane-bin")?,
            "--files" => args.files = flags.value("--files")?,
            "--rounds" => args.rounds = flags.value("--rounds")?,
            "-h" | "--help" => {
                return Err(
                    "usage: deploy-bench [--lane-bin PATH] [--files N] [--rounds N]".into(),
                );
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    // It runs from other directories, and goes into lane.toml.
    args.lane_bin = std::path::absolute(&args.lane_bin).map_err(|e| format!("--lane-bin: {e}"))?;
    if args.rounds < 3 {
        return Err("--rounds must be at least 3 (two that make copies, then synced ones)".into());
    }
    Ok(args)
}

/// A committed repository of `files` files for service `bench.<proc>`.
fn make_repo(root: &Path, proc_: &str, snapshot: bool, files: usize, lane_bin: &Path) -> PathBuf {
    let dir = root.join(proc_);
    let blob: String = "lane deploy-bench filler line\n".repeat(4096 / 30);
    for i in 0..files {
        let sub = dir.join(format!("src/d{:03}", i / 100));
        std::fs::create_dir_all(&sub).expect("create a source dir");
        std::fs::write(sub.join(format!("f{i}.txt")), format!("{i}\n{blob}")).expect("write");
    }
    std::fs::write(
        dir.join("lane.toml"),
        format!(
            "app = \"bench\"\nproc = \"{proc_}\"\nsnapshot = {snapshot}\n\n[run]\ncommand = \"'{}' \
             sample-service --app bench --name {proc_} --port {{port}}\"\n\n[health]\ntcp = true\n",
            lane_bin.display()
        ),
    )
    .expect("write lane.toml");
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-q", "-m", "bench"]);
    dir
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("deploy-bench: {e}");
            std::process::exit(2);
        }
    };
    let root = std::env::temp_dir().join(format!("lane-deploy-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("create the temp dir");
    let home = root.join("home");
    let env = [
        ("LANE_HOME", home.display().to_string()),
        ("LANE_ROUTER_ADDR", "127.0.0.1:0".into()),
        ("LANE_PORT_RANGE", "48100-48199".into()),
    ];
    // Whatever happens below (a failed deploy panics), stop the agent and delete the temp dir.
    struct Cleanup<'a> {
        lane_bin: &'a Path,
        root: PathBuf,
        env: [(&'static str, String); 3],
    }
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let _ = Command::new(self.lane_bin)
                .arg("down")
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
    let _cleanup = Cleanup {
        lane_bin: &args.lane_bin,
        root: root.clone(),
        env: env.clone(),
    };
    let lane = |cwd: &Path, a: &[&str]| {
        let out = Command::new(&args.lane_bin)
            .args(a)
            .current_dir(cwd)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .expect("run lane");
        assert!(
            out.status.success(),
            "lane {a:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };

    let t = Instant::now();
    let snap = make_repo(&root, "snap", true, args.files, &args.lane_bin);
    let inplace = make_repo(&root, "inplace", false, args.files, &args.lane_bin);
    println!(
        "two repositories of {} files each made in {:.1} s",
        args.files,
        t.elapsed().as_secs_f64()
    );
    // For scale, on this machine's disk now: `cp -r` of the same files.
    let cp_target = root.join("cp-reference");
    let t = Instant::now();
    let copied = Command::new("cp")
        .arg("-r")
        .arg(snap.join("src"))
        .arg(&cp_target)
        .status()
        .is_ok_and(|s| s.success());
    let cp_took = t.elapsed();
    assert!(copied, "cp -r failed");
    let _ = std::fs::remove_dir_all(&cp_target);
    // Start the agent outside the measurement.
    lane(&root, &["status"]);

    // Per round, per mode (0: snapshot, 1: in place).
    let mut times: Vec<[Duration; 2]> = Vec::new();
    for round in 0..args.rounds {
        // Alternate which goes first, so neither always meets a warmer cache.
        let order: [(usize, &Path); 2] = if round % 2 == 0 {
            [(0, &snap), (1, &inplace)]
        } else {
            [(1, &inplace), (0, &snap)]
        };
        let mut took = [Duration::ZERO; 2];
        for (which, repo) in order {
            if round > 0 {
                for k in 0..10 {
                    let i = (round * 37 + k * 101) % args.files;
                    let f = repo.join(format!("src/d{:03}/f{i}.txt", i / 100));
                    std::fs::write(&f, format!("edited in round {round}\n")).expect("edit");
                }
            }
            let t = Instant::now();
            lane(repo, &["deploy", "--lane", "bench", "--json"]);
            took[which] = t.elapsed();
        }
        times.push(took);
    }

    let cold = [times[0], times[1]];
    let [ws, wi] = [0, 1].map(|m| median(times[2..].iter().map(|t| t[m]).collect()));
    println!("lane deploy, {} files, wall time (ms):", args.files);
    println!(
        "  {:<36} {:>10} {:>10} {:>7} {:>9}",
        "", "snapshot", "in place", "ratio", "cost"
    );
    for (name, s, i) in [
        ("first deploy (copy made)", cold[0][0], cold[0][1]),
        ("second deploy (another new copy)", cold[1][0], cold[1][1]),
        (
            &*format!("later deploys (synced; median of {})", args.rounds - 2),
            ws,
            wi,
        ),
    ] {
        println!(
            "  {name:<36} {:>10.1} {:>10.1} {:>6.2}× {:>+8.1}",
            ms(s),
            ms(i),
            ms(s) / ms(i),
            ms(s) - ms(i)
        );
    }
    println!(
        "  for scale: `cp -r` of the same {} files took {:.1} ms in this run",
        args.files,
        ms(cp_took)
    );
}
