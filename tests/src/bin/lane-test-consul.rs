//! `lane-test-consul [--addr HOST:PORT] [--token T]... [--read-token T]...`: the Consul HTTP API
//! test double (`lane_tests::consul`) as a process, for tests in other languages (the Go
//! conformance program). Prints `listening on http://HOST:PORT` once it accepts connections, then
//! reads switches from stdin, one a line:
//!
//! - `down` / `up`: refuse connections (dropping open ones) / accept them again;
//! - `slow <ms>`: delay every answer (`slow 0` ends it);
//! - `reset-index`: start the index again from a low value;
//! - `check <service-id> passing|warning|critical`: set an instance's checks;
//! - `agent <node>`: start the agent of another node (answered `ok http://HOST:PORT`);
//! - `node <node> passing|critical`: set a node's `serfHealth` check.
//!
//! Each switch is acknowledged with `ok` (or `error: …`) on stdout. Stops at the end of stdin, on
//! SIGTERM or on Ctrl-C. With `--token`, ACLs are on: `--token` tokens may do anything,
//! `--read-token` ones only read, any other is `403 ACL not found`.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use lane_tests::consul::{Access, ConsulDouble, Options, Policy};

const USAGE: &str =
    "usage: lane-test-consul [--addr HOST:PORT] [--token TOKEN]... [--read-token TOKEN]...";

fn main() -> ExitCode {
    let mut opts = Options::default();
    let mut tokens: HashMap<String, Policy> = HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (arg, None),
        };
        let Some(value) = inline
            .or_else(|| args.next())
            .filter(|_| key != "-h" && key != "--help")
        else {
            if key == "-h" || key == "--help" {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("lane-test-consul: `{key}` needs a value\n{USAGE}");
            return ExitCode::from(2);
        };
        match key.as_str() {
            "--addr" => match value.parse() {
                Ok(a) => opts.addr = Some(a),
                Err(e) => {
                    eprintln!("lane-test-consul: --addr {value}: {e}");
                    return ExitCode::from(2);
                }
            },
            "--token" => {
                tokens.insert(value, Policy::management());
            }
            "--read-token" => {
                tokens.insert(
                    value,
                    Policy {
                        keys: vec![(String::new(), Access::Read)],
                        services: vec![(String::new(), Access::Read)],
                    },
                );
            }
            other => {
                eprintln!("lane-test-consul: unknown argument `{other}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    if !tokens.is_empty() {
        opts.tokens = Some(tokens);
    }
    let double = match ConsulDouble::start(opts) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("lane-test-consul: cannot listen: {e}");
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {}", double.url());
    let _ = out.flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            [] => continue,
            ["down"] => {
                double.set_unreachable(true);
                Ok(())
            }
            ["up"] => {
                double.set_unreachable(false);
                Ok(())
            }
            ["slow", ms] => ms
                .parse()
                .map(|ms| double.set_delay(Duration::from_millis(ms)))
                .map_err(|e| format!("slow {ms}: {e}")),
            ["reset-index"] => {
                double.reset_index();
                Ok(())
            }
            ["check", id, status @ ("passing" | "warning" | "critical")] => {
                if double.force_check(id, status) {
                    Ok(())
                } else {
                    Err(format!("no service instance `{id}`"))
                }
            }
            ["agent", node] => match double.add_agent(node) {
                Ok(addr) => {
                    let _ = writeln!(out, "ok http://{addr}");
                    let _ = out.flush();
                    continue;
                }
                Err(e) => Err(format!("agent {node}: {e}")),
            },
            ["node", node, status @ ("passing" | "critical")] => {
                if double.set_node_health(node, status) {
                    Ok(())
                } else {
                    Err(format!("no node `{node}`"))
                }
            }
            _ => Err(format!("unknown switch `{line}`")),
        };
        let _ = match answer {
            Ok(()) => writeln!(out, "ok"),
            Err(e) => writeln!(out, "error: {e}"),
        };
        let _ = out.flush();
    }
    ExitCode::SUCCESS
}
