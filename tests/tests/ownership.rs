//! Only a lane's owner changes or deletes it, unless forced.

mod common;

use common::{TestEnv, sample_manifest};

#[test]
fn another_user_cannot_rm_a_lane_without_force() {
    let env = TestEnv::new("ownership", 17);
    let repo = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    env.branch(&repo, "feature-x-branch");
    env.ok_in(&repo, &["deploy", "--lane", "feature-x"]);
    let pid = env.instance("feature-x", "demo.b").unwrap()["placement"]["pid"]
        .as_u64()
        .unwrap() as u32;

    // Bob: the same machine, his own user config naming him.
    let bob = env.root.join("bob-config");
    std::fs::create_dir_all(bob.join("lane")).unwrap();
    std::fs::write(bob.join("lane/config.toml"), "owner = \"bob\"\n").unwrap();
    let as_bob = [("XDG_CONFIG_HOME", bob.to_str().unwrap())];

    let out = env.run_in(&env.root, &["rm", "feature-x"], &as_bob);
    assert_eq!(out.code, 5, "{out}");
    assert!(
        out.stderr.contains("alice@example.com"),
        "names the owner: {out}"
    );
    assert!(
        out.stderr.contains("--force") || out.stderr.contains("force"),
        "{out}"
    );
    assert!(env.lane("feature-x").is_some(), "the lane is still there");
    assert!(common::alive(pid));

    // Bob cannot deploy into it or extend it either.
    let out = env.run_in(&repo, &["deploy", "--lane", "feature-x"], &as_bob);
    assert_eq!(out.code, 5, "{out}");
    let out = env.run_in(&env.root, &["extend", "feature-x", "--by", "1h"], &as_bob);
    assert_eq!(out.code, 5, "{out}");
    assert_eq!(
        env.instance("feature-x", "demo.b").unwrap()["placement"]["pid"],
        pid
    );

    let out = env.run_in(&env.root, &["rm", "feature-x", "--force"], &as_bob);
    assert_eq!(out.code, 0, "{out}");
    assert!(env.lane("feature-x").is_none());
    env.wait_for(
        "the lane's process to stop",
        std::time::Duration::from_secs(5),
        || (!common::alive(pid)).then_some(()),
    );
    env.finish();
}
