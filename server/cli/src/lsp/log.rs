//! Logs of the daemon: `tracing` events go to stderr (filtered by `RUST_LOG`, default `warn`) and
//! to the IDE as `window/logMessage` (filtered by `RUST_LOG` when set, else by the client's
//! `trace` setting: `off` → warnings, `messages` → info, `verbose` → debug).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;
use tower_lsp_server::Client;
use tower_lsp_server::ls_types::{MessageType, TraceValue};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt as _, filter_fn};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Lets the server connect the log layer to its client and change the level.
#[derive(Clone, Debug)]
pub struct LogHandle {
    /// 0 = error … 4 = trace.
    level: Arc<AtomicU8>,
    from_env: bool,
    sink: Arc<OnceLock<mpsc::UnboundedSender<(MessageType, String)>>>,
}

fn rank(level: Level) -> u8 {
    match level {
        Level::ERROR => 0,
        Level::WARN => 1,
        Level::INFO => 2,
        Level::DEBUG => 3,
        Level::TRACE => 4,
    }
}

impl LogHandle {
    /// From here on, log events are also sent to `client`.
    pub fn connect(&self, client: Client) {
        let (log_tx, mut log_rx) = mpsc::unbounded_channel::<(MessageType, String)>();
        if self.sink.set(log_tx).is_ok() {
            tokio::spawn(async move {
                while let Some((typ, message)) = log_rx.recv().await {
                    client.log_message(typ, message).await;
                }
            });
        }
    }

    /// Applies the client's `trace` setting (unless `RUST_LOG` decides).
    pub fn set_trace(&self, trace: TraceValue) {
        if self.from_env {
            return;
        }
        let level = match trace {
            TraceValue::Off => Level::WARN,
            TraceValue::Messages => Level::INFO,
            TraceValue::Verbose => Level::DEBUG,
        };
        self.level.store(rank(level), Ordering::Relaxed);
    }
}

impl LogHandle {
    /// Whether an event with `meta` goes to the client. Such events are not also written to
    /// stderr, which the IDE shows in the same output (every line would show twice).
    fn delivers(&self, meta: &tracing::Metadata<'_>) -> bool {
        if self.sink.get().is_none() {
            return false;
        }
        if meta.target().starts_with("tower_lsp_server") && *meta.level() > Level::INFO {
            return false;
        }
        // With `RUST_LOG` both outputs use the same filter.
        self.from_env || rank(*meta.level()) <= self.level.load(Ordering::Relaxed)
    }
}

struct ClientLayer {
    handle: LogHandle,
    env: Option<EnvFilter>,
}

impl<S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S>
    for ClientLayer
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        // The framework logs every message it writes at trace level: never echo those.
        if meta.target().starts_with("tower_lsp_server") && *meta.level() > Level::INFO {
            return;
        }
        let wanted = match &self.env {
            Some(env) => env.enabled(meta, ctx.clone()),
            None => self.handle.delivers(meta),
        };
        if !wanted {
            return;
        }
        let Some(sink) = self.handle.sink.get() else {
            return;
        };
        let mut visitor = Message::default();
        event.record(&mut visitor);
        let typ = match *meta.level() {
            Level::ERROR => MessageType::ERROR,
            Level::WARN => MessageType::WARNING,
            Level::INFO => MessageType::INFO,
            _ => MessageType::LOG,
        };
        let _ = sink.send((typ, format!("[{}] {}", meta.target(), visitor.0)));
    }
}

#[derive(Default)]
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

/// Installs the daemon's subscriber. Call once, before any client exists.
pub fn init() -> LogHandle {
    let from_env = std::env::var_os("RUST_LOG").is_some_and(|v| !v.is_empty());
    let handle = LogHandle {
        level: Arc::new(AtomicU8::new(rank(Level::WARN))),
        from_env,
        sink: Arc::new(OnceLock::new()),
    };
    let stderr_filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let to_client = handle.clone();
    let client_layer = ClientLayer {
        handle: handle.clone(),
        env: from_env
            .then(|| EnvFilter::try_from_default_env().ok())
            .flatten(),
    };
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .with_filter(stderr_filter.and(filter_fn(move |meta| !to_client.delivers(meta)))),
        )
        .with(client_layer)
        .try_init();
    handle
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(from_env: bool) -> LogHandle {
        LogHandle {
            level: Arc::new(AtomicU8::new(rank(Level::WARN))),
            from_env,
            sink: Arc::new(OnceLock::new()),
        }
    }

    #[test]
    fn once_a_client_is_connected_what_it_gets_is_not_also_on_stderr() {
        let h = handle(false);
        let warn = tracing::Metadata::new(
            "w",
            "lane::lsp",
            Level::WARN,
            None,
            None,
            None,
            tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(&CALLSITE)),
            tracing::metadata::Kind::EVENT,
        );
        let info = tracing::Metadata::new(
            "i",
            "lane::lsp",
            Level::INFO,
            None,
            None,
            None,
            tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(&CALLSITE)),
            tracing::metadata::Kind::EVENT,
        );
        // Before the client is there, everything goes to stderr.
        assert!(!h.delivers(&warn));
        let (tx, _rx) = mpsc::unbounded_channel();
        h.sink.set(tx).expect("set once");
        assert!(h.delivers(&warn), "a warning goes to the client only");
        assert!(!h.delivers(&info), "info stays on stderr at trace off");
        h.set_trace(TraceValue::Messages);
        assert!(h.delivers(&info));
        let env = handle(true);
        let (tx, _rx) = mpsc::unbounded_channel();
        env.sink.set(tx).expect("set once");
        assert!(env.delivers(&info), "with RUST_LOG both use one filter");
    }

    struct Callsite;
    impl tracing::callsite::Callsite for Callsite {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &tracing::Metadata<'_> {
            unreachable!("not registered")
        }
    }
    static CALLSITE: Callsite = Callsite;
}
