//! The router's limits come from the environment of `lane agent` / `lane router`; a bad value is an
//! invalid-input error that names the variable.

mod common;

use common::TestEnv;

#[test]
fn the_standalone_router_refuses_a_bad_limit_and_names_it() {
    let env = TestEnv::new("router-bad-limit", 91);
    for (var, value, says) in [
        (
            "LANE_ROUTER_HEAD_TIMEOUT",
            "soon",
            "LANE_ROUTER_HEAD_TIMEOUT `soon` is not a duration",
        ),
        (
            "LANE_ROUTER_MAX_CONNECTIONS",
            "0",
            "LANE_ROUTER_MAX_CONNECTIONS `0` is not a number above zero",
        ),
    ] {
        let out = env.run_in(
            &env.root,
            &["router", "--listen", "127.0.0.1:0"],
            &[(var, value)],
        );
        assert_eq!(out.code, 2, "{out}");
        assert!(out.stderr.contains(says), "{out}");
    }
    assert!(env.agent_pid().is_none(), "nothing was started");
    env.finish();
}
