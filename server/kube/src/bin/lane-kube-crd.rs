//! Prints a lane CustomResourceDefinition as YAML:
//! `cargo run -p lane-kube --bin lane-kube-crd > deploy/crd.yaml` (the `Lane`), and
//! `cargo run -p lane-kube --bin lane-kube-crd -- environment > deploy/environment-crd.yaml`
//! (the `LaneEnvironment`).

use std::process::ExitCode;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None | Some("lane") => print!("{}", lane_kube::crd::crd_yaml()),
        Some("environment") => print!("{}", lane_kube::environment::crd_yaml()),
        Some(other) => {
            eprintln!("lane-kube-crd: unknown CRD `{other}`; use `lane` or `environment`");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
