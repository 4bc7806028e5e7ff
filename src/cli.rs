//! Command-line flags, named and defaulted as daprd and `dapr run` name them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::app_channel::AppProtocol;
use crate::config::parse_duration;
use crate::runtime::SidecarConfig;

#[derive(Debug, Parser)]
#[command(
    name = "outrigger",
    version,
    about = "A sidecar that serves Dapr's bindings API (gRPC and HTTP) with a Kafka binding.",
    long_about = "outrigger serves the Dapr bindings API to an app that runs beside it: official Dapr SDKs, \
                  the Dapr quickstarts and grpcurl work unchanged.\n\n\
                  `outrigger sidecar` runs the sidecar alone (as in a Kubernetes pod); \
                  `outrigger run` starts an app beside its sidecar, as `dapr run` does."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar alone, like daprd.
    Sidecar(SidecarArgs),
    /// Run an app with its sidecar, like `dapr run`: `outrigger run [flags] [--] <command ...>`,
    /// or several apps from a run template: `outrigger run -f dapr.yaml`.
    ///
    /// As with `dapr run`, the flags below are taken anywhere before a `--`, even after the app
    /// command (`outrigger run -a myapp node app.js --resources-path ./components`); other
    /// arguments after the command, and all after `--`, go to the app. Without --dapr-http-port
    /// and --dapr-grpc-port, free ports are picked (and printed). The app gets DAPR_HTTP_PORT,
    /// DAPR_GRPC_PORT, APP_ID, APP_PORT, DAPR_API_TOKEN and APP_API_TOKEN; its output lines are
    /// prefixed `== APP == `. When the app exits, the sidecar stops and `outrigger run` exits
    /// with the app's code; SIGINT/SIGTERM stop both (the app gets SIGTERM, then SIGKILL after
    /// --dapr-graceful-shutdown-seconds).
    Run(RunArgs),
    /// The Kubernetes admission webhook that adds outrigger to pods annotated `dapr.io/enabled: "true"`.
    Injector(crate::kubernetes::injector::InjectorArgs),
}

/// Flags of the sidecar; `outrigger run` accepts the same ones.
#[derive(Debug, Clone, Args)]
pub struct SidecarArgs {
    /// The id of the app this sidecar serves (used in metadata and component scopes).
    #[arg(long, short = 'a', env = "APP_ID", default_value = "")]
    pub app_id: String,

    /// The port the app listens on; input bindings are delivered there. Without it, input bindings are not consumed.
    #[arg(long, short = 'p')]
    pub app_port: Option<u16>,

    /// How the sidecar talks to the app: http (OPTIONS/POST /{binding}) or grpc (AppCallback).
    #[arg(long, short = 'P', value_enum, default_value = "http")]
    pub app_protocol: AppProtocol,

    /// The address the app listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub app_channel_address: String,

    /// Port of the HTTP API (POST /v1.0/bindings/{name}, /v1.0/healthz, /v1.0/metadata). 0 picks a free port.
    #[arg(long, short = 'H', default_value_t = 3500)]
    pub dapr_http_port: u16,

    /// Port of the gRPC API (dapr.proto.runtime.v1.Dapr). 0 picks a free port.
    #[arg(long, short = 'G', default_value_t = 50001)]
    pub dapr_grpc_port: u16,

    /// Folder (or file) of component YAML files; repeatable. `--components-path` is the older name.
    #[arg(
        long = "resources-path",
        short = 'd',
        alias = "components-path",
        value_name = "PATH"
    )]
    pub resources_path: Vec<PathBuf>,

    /// Comma-separated IP addresses the APIs listen on; `localhost` is 127.0.0.1 and ::1. Use 0.0.0.0 in a container.
    #[arg(long, default_value = "localhost")]
    pub dapr_listen_addresses: String,

    /// Largest request body the APIs accept, in MB (bigger bodies get 413 / RESOURCE_EXHAUSTED).
    #[arg(long, default_value_t = 4)]
    pub dapr_http_max_request_size: usize,

    /// Seconds to finish in-flight work on shutdown (SIGINT, SIGTERM, /v1.0/shutdown).
    #[arg(long, default_value_t = 5)]
    pub dapr_graceful_shutdown_seconds: u64,

    /// How long to wait for the app port before reporting it unreachable (seconds, or a duration like 90s).
    #[arg(long, default_value = "60", value_parser = parse_seconds)]
    pub app_channel_timeout: Duration,

    /// Most input deliveries in flight to the app at once; -1 means no cap beyond one per partition.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub app_max_concurrency: i64,

    /// How long one delivery to the app may take before it counts as failed (and is retried).
    #[arg(long, default_value = "60s", value_parser = parse_seconds)]
    pub app_request_timeout: Duration,

    /// Serve Prometheus metrics on --metrics-port (`--enable-metrics=false` turns them off).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_metrics: bool,

    /// Port of the Prometheus metrics endpoint (`/metrics`, on the listen addresses). 0 picks a free port.
    #[arg(long, default_value_t = 9090)]
    pub metrics_port: u16,

    /// Threads of the async runtime; librdkafka runs its own threads besides. One
    /// measured ~14% less CPU per message than two at the same throughput (BENCHMARKS.md).
    #[arg(long, default_value_t = 1, env = "OUTRIGGER_WORKER_THREADS")]
    pub worker_threads: usize,

    /// Export the sidecar's spans (one per output call, one per delivery to the app) to this
    /// OTLP/HTTP collector, JSON-encoded to {URL}/v1/traces, e.g. http://localhost:4318.
    /// Off when unset. Not read from OTEL_EXPORTER_OTLP_ENDPOINT: that variable is
    /// the app's, often https:// or gRPC, and would stop the sidecar from starting.
    #[arg(long, env = "OUTRIGGER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// Most output binding calls in flight at once, HTTP and gRPC together; beyond
    /// it a call is refused at once with 429 / RESOURCE_EXHAUSTED, so that
    /// overload cannot grow memory without bound.
    #[arg(long, default_value_t = crate::api::DEFAULT_MAX_IN_FLIGHT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_output_calls_in_flight: usize,

    /// Log level: debug, info, warn, error.
    #[arg(long, default_value = "info", value_parser = ["debug", "info", "warn", "warning", "error", "fatal"])]
    pub log_level: String,

    /// Write logs as JSON lines (time, level, msg, scope, app_id), as daprd does.
    #[arg(long)]
    pub log_as_json: bool,

    #[command(flatten)]
    pub kubernetes: crate::kubernetes::KubernetesArgs,
}

/// A number of seconds, or a duration with a unit.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<u64>() {
        Ok(s) => Ok(Duration::from_secs(s)),
        Err(_) => parse_duration(text),
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// A multi-app run template (Dapr's `dapr.yaml` format), or a folder holding `dapr.yaml`.
    #[arg(long = "run-file", short = 'f', value_name = "FILE|DIR")]
    pub run_file: Option<PathBuf>,

    #[command(flatten)]
    pub sidecar: SidecarArgs,

    /// The app command and its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

impl SidecarArgs {
    /// The sidecar configuration; tokens come from `DAPR_API_TOKEN` and `APP_API_TOKEN`.
    pub fn to_config(&self) -> SidecarConfig {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        SidecarConfig {
            app_id: self.app_id.clone(),
            app_port: self.app_port,
            app_protocol: self.app_protocol,
            app_channel_address: self.app_channel_address.clone(),
            http_port: self.dapr_http_port,
            grpc_port: self.dapr_grpc_port,
            listen_addresses: self
                .dapr_listen_addresses
                .split(',')
                .map(|s| s.trim().to_string())
                .collect(),
            resources_paths: if self.resources_path.is_empty() {
                default_resources_path()
            } else {
                self.resources_path.clone()
            },
            max_request_bytes: self.dapr_http_max_request_size.saturating_mul(1 << 20),
            graceful_shutdown: Duration::from_secs(self.dapr_graceful_shutdown_seconds),
            app_channel_timeout: self.app_channel_timeout,
            app_max_concurrency: u32::try_from(self.app_max_concurrency)
                .ok()
                .filter(|n| *n > 0),
            app_request_timeout: self.app_request_timeout,
            metrics_port: self.enable_metrics.then_some(self.metrics_port),
            api_token: env("DAPR_API_TOKEN"),
            app_token: env("APP_API_TOKEN"),
            // An empty value means unset, as OpenTelemetry SDKs read their variables.
            otlp_endpoint: self
                .otlp_endpoint
                .as_deref()
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_string),
            extra_components: Default::default(),
            max_output_calls_in_flight: self.max_output_calls_in_flight,
            start_hold: None,
        }
    }
}

/// As `dapr run`: `~/.dapr/components` when no path is given and it exists.
fn default_resources_path() -> Vec<PathBuf> {
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".dapr").join("components"))
        .filter(|p| p.is_dir())
        .into_iter()
        .collect()
}
