//! The real servers the tests use: MariaDB and Redis started by `scripts/services.sh` (or the
//! servers `LANE_TEST_MYSQL_URL` / `LANE_TEST_REDIS_URL` name). A test that finds no server starts
//! one through the script; when that fails, the test fails.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ensure(service: &str) {
    let out = Command::new(repo_root().join("scripts/services.sh"))
        .arg(service)
        .output()
        .expect("scripts/services.sh runs");
    assert!(
        out.status.success(),
        "scripts/services.sh {service} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn url(var: &str, service: &str) -> String {
    let out = Command::new(repo_root().join("scripts/services.sh"))
        .arg("env")
        .output()
        .expect("scripts/services.sh env runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = service;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("export {var}=")))
        .unwrap_or_else(|| panic!("scripts/services.sh env prints {var}: {text}"))
        .to_owned()
}

/// The MariaDB server's address (user with every privilege), started when needed.
pub fn mysql_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        ensure("mariadb");
        url("LANE_TEST_MYSQL_URL", "mariadb")
    })
}

/// The Redis server's address (no database in it), started when needed.
pub fn redis_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        ensure("redis");
        url("LANE_TEST_REDIS_URL", "redis")
    })
}

/// The Kafka broker's bootstrap `host:port`, started when needed.
pub fn kafka_bootstrap() -> &'static str {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP.get_or_init(|| {
        ensure("kafka");
        url("LANE_TEST_KAFKA_BOOTSTRAP", "kafka")
    })
}

/// A name unique to this test process: `<prefix><pid>_<n>` (letters, digits, `_`).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A lane id unique to this test process.
pub fn lane(prefix: &str) -> lane_core::LaneId {
    unique(prefix).replace('_', "-").parse().expect("a lane id")
}
