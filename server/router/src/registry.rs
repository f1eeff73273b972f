//! Where a router's table comes from when a registry feeds it (`lane router --registry consul`),
//! and whether that registry answers. The table source reports here; the router says it in
//! `/healthz` (still 200: it serves the last known table, failing static like Envoy) and in
//! `/metrics` (`lane_router_registry_up`, `lane_router_registry_stale_seconds`).

use std::fmt::Write as _;
use std::time::Instant;

/// A registry feeding the table, and whether it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryState {
    /// `consul`.
    pub name: String,
    /// Since when it does not answer (`None`: it does).
    pub stale_since: Option<Instant>,
    /// What went wrong last.
    pub error: Option<String>,
    /// Registrations left out because their address (a DNS name) does not resolve, one line
    /// each (`<instance>: <name>: <why>`).
    pub unresolved: Vec<String>,
}

impl RegistryState {
    /// Following `name`.
    pub fn ok(name: &str) -> Self {
        RegistryState {
            name: name.to_owned(),
            stale_since: None,
            error: None,
            unresolved: Vec::new(),
        }
    }

    /// `name` stopped answering at `since` with `error`.
    pub fn stale(name: &str, since: Instant, error: String) -> Self {
        RegistryState {
            name: name.to_owned(),
            stale_since: Some(since),
            error: Some(error),
            unresolved: Vec::new(),
        }
    }

    /// The same, with `unresolved` as the registrations whose address does not resolve.
    pub fn with_unresolved(mut self, unresolved: Vec<String>) -> Self {
        self.unresolved = unresolved;
        self
    }

    /// The `/healthz` line.
    pub(crate) fn healthz(&self) -> String {
        let mut out = self.following();
        for u in &self.unresolved {
            let _ = writeln!(
                out,
                "registry {}: left out, address does not resolve: {u}",
                self.name
            );
        }
        out
    }

    fn following(&self) -> String {
        match self.stale_since {
            None => format!("registry {}: following\n", self.name),
            Some(since) => format!(
                "registry {}: unreachable for {}s, serving the last known table ({})\n",
                self.name,
                since.elapsed().as_secs(),
                self.error.as_deref().unwrap_or("no answer")
            ),
        }
    }

    /// The `/metrics` lines.
    pub(crate) fn metrics(&self, out: &mut String) {
        out.push_str(
            "# HELP lane_router_registry_up Whether the registry feeding the table answers.\n",
        );
        out.push_str("# TYPE lane_router_registry_up gauge\n");
        let _ = writeln!(
            out,
            "lane_router_registry_up{{registry=\"{}\"}} {}",
            self.name,
            u8::from(self.stale_since.is_none())
        );
        out.push_str(
            "# HELP lane_router_registry_stale_seconds How long the table has been served without the registry answering.\n",
        );
        out.push_str("# TYPE lane_router_registry_stale_seconds gauge\n");
        let _ = writeln!(
            out,
            "lane_router_registry_stale_seconds{{registry=\"{}\"}} {}",
            self.name,
            self.stale_since.map_or(0.0, |s| s.elapsed().as_secs_f64())
        );
        out.push_str(
            "# HELP lane_router_registry_unresolved_addresses Registrations left out because their address does not resolve.\n",
        );
        out.push_str("# TYPE lane_router_registry_unresolved_addresses gauge\n");
        let _ = writeln!(
            out,
            "lane_router_registry_unresolved_addresses{{registry=\"{}\"}} {}",
            self.name,
            self.unresolved.len()
        );
    }
}
