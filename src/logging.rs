//! Log set-up: human-readable lines, or JSON lines shaped like daprd's
//! (`time`, `level`, `type`, `msg`, `scope`, `app_id`, `instance`, `ver`).
//!
//! Log lines and the launcher's app output go to stdout through [`console`]:
//! one thread of its own writes them, so that a paused terminal or a slow pipe
//! never blocks the async runtime (and with it Kafka delivery). When its
//! buffer is full, lines are dropped and counted (`outrigger_log_lines_dropped_total`).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::layer::Layer;
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Registry};

/// Installs the global subscriber. `level` is daprd's: debug, info, warn, error.
/// `RUST_LOG`, when set, overrides it.
pub fn init(level: &str, json: bool, app_id: &str) {
    let level = match level {
        "warning" => "warn",
        "fatal" => "error",
        other => other,
    };
    // `Targets` when RUST_LOG is not set: EnvFilter compiles regexes to parse
    // its directives, a few hundred microseconds of every start.
    let filter: Box<dyn Layer<Registry> + Send + Sync> = match EnvFilter::try_from_default_env() {
        Ok(from_env) => Box::new(from_env),
        Err(_) => {
            let level = level.parse().unwrap_or(LevelFilter::INFO);
            let quiet = ["h2", "hyper", "tower", "rdkafka"].map(|t| (t, LevelFilter::WARN));
            Box::new(Targets::new().with_default(level).with_targets(quiet))
        }
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(SpanFieldsLayer)
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(DaprJson {
                        app_id: app_id.to_string(),
                        instance: hostname(),
                    })
                    .with_writer(console().clone()),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                    .with_writer(console().clone()),
            )
            .try_init()
    };
    // A second init (tests starting several sidecars) keeps the first subscriber.
    let _ = result;
}

/// Lines the stdout thread may hold before it drops new ones, when they are
/// the sidecar's own log lines. The channel's slots are allocated and written
/// up front (32 bytes each) at every start: 64k lines cost 2 MB and 512 page
/// faults, a tenth of the time to ready.
const SIDECAR_LINES: usize = 1024;
/// With the launcher, the app's output goes through the same thread, in bursts.
const LAUNCHER_LINES: usize = 64 * 1024;
static CONSOLE_LINES: AtomicUsize = AtomicUsize::new(SIDECAR_LINES);

/// Sizes the console for an app's output too (the launcher); effective when
/// called before the first use of [`console`] or [`init`].
pub fn size_console_for_app_output() {
    CONSOLE_LINES.store(LAUNCHER_LINES, Ordering::Relaxed);
}

static CONSOLE: OnceLock<NonBlocking> = OnceLock::new();
static CONSOLE_GUARD: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// The process's stdout, written by a thread of its own; each write is one line.
pub fn console() -> &'static NonBlocking {
    CONSOLE.get_or_init(|| {
        let (writer, guard) = NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(CONSOLE_LINES.load(Ordering::Relaxed))
            .thread_name("outrigger-stdout")
            .finish(std::io::stdout());
        *CONSOLE_GUARD.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard);
        writer
    })
}

/// Lines dropped because stdout did not keep up.
pub fn dropped_lines() -> u64 {
    CONSOLE
        .get()
        .map_or(0, |c| c.error_counter().dropped_lines() as u64)
}

/// Writes what the stdout thread still holds (waiting at most about a
/// second); called before the process exits.
pub fn flush() {
    drop(
        CONSOLE_GUARD
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(),
    );
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default()
}

/// Span fields kept as JSON, so that event lines can carry `binding.name` and the like.
struct SpanFields(Map<String, Value>);

struct SpanFieldsLayer;

impl<S> tracing_subscriber::Layer<S> for SpanFieldsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut visitor = JsonVisitor::default();
        attrs.record(&mut visitor);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(visitor.0));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(fields) = ext.get_mut::<SpanFields>() {
                let mut visitor = JsonVisitor(std::mem::take(&mut fields.0));
                values.record(&mut visitor);
                fields.0 = visitor.0;
            }
        }
    }
}

#[derive(Default)]
struct JsonVisitor(Map<String, Value>);

impl Visit for JsonVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            Value::String(format!("{value:?}")),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

struct DaprJson {
    app_id: String,
    instance: String,
}

impl<S, N> FormatEvent<S, N> for DaprJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    line.extend(fields.0.clone());
                }
            }
        }
        let mut visitor = JsonVisitor::default();
        event.record(&mut visitor);
        let mut fields = visitor.0;
        let msg = fields
            .remove("message")
            .unwrap_or(Value::String(String::new()));
        line.extend(fields);
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "debug",
        };
        line.insert(
            "time".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into(),
        );
        line.insert("level".into(), level.into());
        line.insert("type".into(), "log".into());
        line.insert("msg".into(), msg);
        line.insert(
            "scope".into(),
            event.metadata().target().replace("::", ".").into(),
        );
        line.insert("app_id".into(), self.app_id.clone().into());
        line.insert("instance".into(), self.instance.clone().into());
        line.insert("ver".into(), env!("CARGO_PKG_VERSION").into());
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}
