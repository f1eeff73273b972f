//! Prints the `Lane` CustomResourceDefinition as YAML: `cargo run -p lane-kube --bin lane-kube-crd >
//! deploy/crd.yaml`.

fn main() {
    print!("{}", lane_kube::crd::crd_yaml());
}
