//! `lane demo`, the README's main command, end to end: every scenario's requests take the path the
//! routing table says, and it cleans up after itself.

mod common;

use common::TestEnv;

#[test]
fn the_demo_routes_every_scenario_as_the_table_says_and_cleans_up() {
    let env = TestEnv::new("demo", 73);
    let demo = env.spawn_in(&env.root, &["demo"], &[]);
    // The demo runs its agent and services on a private state dir named after its pid.
    let private = format!("lane-demo-{}", demo.pid());
    let out = demo.wait(std::time::Duration::from_secs(120));
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("all paths as expected"), "{out}");
    assert!(!out.stdout.contains('✗'), "{out}");
    let checks = out.stdout.matches('✓').count();
    assert_eq!(checks, 8, "eight requests checked: {out}");
    for path in [
        "a@baseline → b@feature-x → c@baseline",
        "a@feature-y → b@baseline → c@feature-y",
        "a@baseline → b@feature-x → c@feature-x-alice",
    ] {
        assert!(out.stdout.contains(path), "`{path}` in {out}");
    }
    let left: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc is readable")
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| String::from_utf8_lossy(&env).contains(&private))
        })
        .collect();
    assert!(left.is_empty(), "the demo left processes running: {left:?}");
    assert!(
        !std::env::temp_dir().join(&private).exists(),
        "the demo removed its state"
    );
    env.finish();
}
