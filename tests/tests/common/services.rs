//! The real data servers the end-to-end tests use (MariaDB, Redis, Kafka), started by
//! `scripts/services.sh` when they are not running; a test fails when they cannot be.

use std::path::Path;
use std::process::Command;

/// What `scripts/services.sh env` printed: the servers' addresses as `export VAR=value` lines.
pub struct ServicesEnv {
    text: String,
}

impl ServicesEnv {
    /// The value of `var` (e.g. `LANE_TEST_REDIS_URL`); panics when the script did not print it.
    pub fn var(&self, var: &str) -> String {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {var}=")))
            .unwrap_or_else(|| panic!("{var} in {}", self.text))
            .to_owned()
    }
}

/// Runs `scripts/services.sh <which>` (`all`, `redis`, …: starts what is not running; the test
/// fails when it cannot) and returns what `scripts/services.sh env` prints.
pub fn start(which: &str) -> ServicesEnv {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh");
    let up = Command::new(&script)
        .arg(which)
        .output()
        .expect("services.sh runs");
    assert!(
        up.status.success(),
        "scripts/services.sh {which} failed:\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let env = Command::new(&script)
        .arg("env")
        .output()
        .expect("services.sh env runs");
    ServicesEnv {
        text: String::from_utf8_lossy(&env.stdout).into_owned(),
    }
}
