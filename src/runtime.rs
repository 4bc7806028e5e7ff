//! Wiring and lifecycle of one sidecar: load components, build bindings, bind
//! the API listeners, connect to the app and start input bindings; on shutdown,
//! stop inputs, drain the servers and flush outputs within the grace period.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::api::{self, ApiState, AppInfo, ComponentInfo, Readiness};
use crate::app_channel::{self, AppProtocol, AppSink, AppTarget, Wanted};
use crate::bindings::{self, InputBinding, OutputBinding, Planned};
use crate::config::{self, ConfigErrors};
use crate::metrics::Metrics;
use crate::status::{InputState, InputStatus};

/// Everything a sidecar needs to start; `outrigger sidecar` builds it from flags.
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    pub app_id: String,
    pub app_port: Option<u16>,
    pub app_protocol: AppProtocol,
    pub app_channel_address: String,
    pub http_port: u16,
    pub grpc_port: u16,
    /// Hosts to listen on; `localhost` means 127.0.0.1 and ::1.
    pub listen_addresses: Vec<String>,
    pub resources_paths: Vec<PathBuf>,
    pub max_request_bytes: usize,
    pub graceful_shutdown: Duration,
    pub app_channel_timeout: Duration,
    pub app_max_concurrency: Option<u32>,
    pub app_request_timeout: Duration,
    /// Port of `/metrics`; `None` turns metrics off.
    pub metrics_port: Option<u16>,
    pub api_token: Option<String>,
    pub app_token: Option<String>,
    /// OTLP/HTTP collector the sidecar's spans are exported to; `None` (the
    /// default) exports nothing.
    pub otlp_endpoint: Option<String>,
    /// Output binding calls in flight at once, HTTP and gRPC together; more are
    /// refused with 429 / RESOURCE_EXHAUSTED.
    pub max_output_calls_in_flight: usize,
    /// Components from another source than files (the Kubernetes API server), loaded
    /// after `resources_paths`.
    pub extra_components: ComponentDocs,
    /// Test hook, `None` outside tests: awaited once the API ports are bound,
    /// before anything else of the start-up, so that a test can connect to a
    /// sidecar that is not ready yet (a real start is over too fast to hit).
    #[doc(hidden)]
    pub start_hold: Option<StartHold>,
}

/// Called with the bound HTTP and gRPC addresses; the start-up waits for its future.
#[derive(Clone)]
#[doc(hidden)]
pub struct StartHold(pub Arc<StartHoldFn>);

#[doc(hidden)]
pub type StartHoldFn =
    dyn Fn(Vec<SocketAddr>, Vec<SocketAddr>) -> bindings::BoxFuture<'static, ()> + Send + Sync;

impl std::fmt::Debug for StartHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StartHold")
    }
}

/// Component documents, each with the name its errors show; their text may hold resolved
/// secrets, so `Debug` prints only the names.
#[derive(Clone, Default)]
pub struct ComponentDocs(pub Vec<(PathBuf, String)>);

impl std::fmt::Debug for ComponentDocs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(p, _)| p))
            .finish()
    }
}

impl Default for SidecarConfig {
    fn default() -> Self {
        SidecarConfig {
            app_id: String::new(),
            app_port: None,
            app_protocol: AppProtocol::Http,
            app_channel_address: "127.0.0.1".into(),
            http_port: 3500,
            grpc_port: 50001,
            listen_addresses: vec!["localhost".into()],
            resources_paths: Vec::new(),
            max_request_bytes: 4 << 20,
            graceful_shutdown: Duration::from_secs(5),
            app_channel_timeout: Duration::from_secs(60),
            app_max_concurrency: None,
            app_request_timeout: Duration::from_secs(60),
            metrics_port: None,
            api_token: None,
            app_token: None,
            otlp_endpoint: None,
            extra_components: ComponentDocs::default(),
            max_output_calls_in_flight: api::DEFAULT_MAX_IN_FLIGHT,
            start_hold: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("{0}")]
    Otlp(#[from] crate::otlp::OtlpError),
    #[error("component {name} ({}) failed to start: {source}", file.display())]
    ComponentInit {
        name: String,
        file: PathBuf,
        #[source]
        source: bindings::BindingError,
    },
    #[error(
        "APP_API_TOKEN is not a valid HTTP header value (visible ASCII, spaces and tabs only): it could not be sent to the app"
    )]
    AppToken,
    #[error("cannot listen on {addr} for the {api} API: {source}")]
    Bind {
        api: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// The process exit code: 64 (EX_USAGE) for bad configuration, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            RuntimeError::Config(_) | RuntimeError::Otlp(_) | RuntimeError::AppToken => 64,
            _ => 1,
        }
    }
}

/// Starts, on a thread of its own, the set-up that depends on no flag or
/// component (librdkafka's global state: CRC tables, OpenSSL), so that it
/// overlaps the parsing of flags and components and the log and runtime
/// set-up instead of following them. Detached on purpose: each piece is also
/// done, once, where it is needed, so a warm-up that is late or fails changes
/// nothing but time.
pub fn prewarm() {
    let spawned = std::thread::Builder::new()
        .name("outrigger-prewarm".into())
        .spawn(bindings::prewarm);
    drop(spawned);
}

/// A started sidecar. Dropping it does not stop it; call [`Sidecar::shutdown`]
/// or cancel the token given to [`Sidecar::start`], then [`Sidecar::wait`].
pub struct Sidecar {
    state: Arc<ApiState>,
    http_addrs: Vec<SocketAddr>,
    grpc_addrs: Vec<SocketAddr>,
    metrics_addrs: Vec<SocketAddr>,
    /// The lifecycle; `true` when every task it owns ended cleanly.
    task: JoinHandle<bool>,
}

impl Sidecar {
    /// Loads components and starts serving. Returns once the API ports are bound.
    pub async fn start(
        config: SidecarConfig,
        shutdown: CancellationToken,
    ) -> Result<Sidecar, RuntimeError> {
        let started = Instant::now();
        tracing::info!(app.id = %config.app_id, "starting outrigger {}", env!("CARGO_PKG_VERSION"));

        if let Some(token) = &config.app_token
            && http::HeaderValue::from_str(token).is_err()
        {
            // Sent on every call into the app: one it cannot carry would make
            // every delivery fail with 401, retried forever.
            return Err(RuntimeError::AppToken);
        }
        // Bound first, served once the components are built: a client that
        // connects during the start-up (an SDK or a probe waiting for
        // `healthz`) waits in the backlog and is answered as soon as the
        // sidecar is ready, instead of being refused and retrying later.
        let hosts = listen_ips(&config.listen_addresses);
        let http_listeners = bind_all("HTTP", &hosts, config.http_port).await?;
        let grpc_listeners = bind_all("gRPC", &hosts, config.grpc_port).await?;
        if let Some(StartHold(hold)) = &config.start_hold {
            let addrs =
                |ls: &[TcpListener]| ls.iter().filter_map(|l| l.local_addr().ok()).collect();
            hold(addrs(&http_listeners), addrs(&grpc_listeners)).await;
        }
        let planned = load_components(&config)?;
        let mut outputs: HashMap<String, Arc<dyn OutputBinding>> = HashMap::new();
        let mut inputs: Vec<(Planned, Box<dyn InputBinding>, Arc<InputStatus>)> = Vec::new();
        let mut components = Vec::new();
        let output_init = bindings::OutputInit {
            max_in_flight: config.max_output_calls_in_flight,
        };
        // Every side of every component is built before the sidecar is ready:
        // clients created, TLS material loaded. A failure stops the start-up
        // (or, with `ignoreErrors`, skips the component).
        for p in planned {
            let name = p.component.name.clone();
            let status = Arc::new(InputStatus::new(&name, &p.component.component_type));
            let input_init = bindings::InputInit {
                status: status.clone(),
                grace: config.graceful_shutdown,
            };
            let built = p
                .plan
                .output(&name, output_init)
                .and_then(|o| p.plan.input(&name, input_init).map(|i| (o, i)));
            let (output, input) = match built {
                Ok(pair) => pair,
                Err(source) if p.component.ignore_errors => {
                    tracing::warn!(component = %name, "component failed to start and is skipped (ignoreErrors): {source}");
                    continue;
                }
                Err(source) => {
                    return Err(RuntimeError::ComponentInit {
                        name,
                        file: p.component.file.clone(),
                        source,
                    });
                }
            };
            tracing::info!(component = %name, r#type = %p.component.component_type, output = output.is_some(), input = input.is_some(), "component loaded");
            let mut capabilities = Vec::new();
            if input.is_some() {
                capabilities.push("INPUT_BINDING");
            }
            if output.is_some() {
                capabilities.push("OUTPUT_BINDING");
            }
            components.push(ComponentInfo {
                name: name.clone(),
                component_type: p.component.component_type.clone(),
                version: p.component.version.clone(),
                capabilities,
            });
            if let Some(o) = output {
                outputs.insert(name.clone(), o);
            }
            if let Some(i) = input {
                inputs.push((p, i, status));
            }
        }

        let output_types: Vec<(String, String)> = components
            .iter()
            .filter(|c| outputs.contains_key(&c.name))
            .map(|c| (c.name.clone(), c.component_type.clone()))
            .collect();
        let input_statuses: Vec<Arc<InputStatus>> =
            inputs.iter().map(|(_, _, s)| s.clone()).collect();
        let metrics = Arc::new(Metrics::new(&config.app_id, &output_types, &input_statuses));

        // If a later step fails, dropping the exporter stops its task.
        let (tracer, exporter) = match config.otlp_endpoint.as_deref() {
            Some(endpoint) => {
                let service = if config.app_id.is_empty() {
                    "outrigger"
                } else {
                    config.app_id.as_str()
                };
                let (tracer, exporter) = crate::otlp::start(endpoint, service)?;
                tracing::info!(endpoint, "exporting spans over OTLP/HTTP");
                (Some(tracer), Some(exporter))
            }
            None => (None, None),
        };

        let readiness = Arc::new(Readiness::default());
        let state = Arc::new(ApiState {
            app_id: config.app_id.clone(),
            outputs: Arc::new(outputs),
            components,
            inputs: input_statuses,
            metrics: metrics.clone(),
            app: AppInfo {
                port: config.app_port,
                protocol: config.app_protocol.as_str(),
                address: config.app_channel_address.clone(),
                max_concurrency: config.app_max_concurrency.unwrap_or(0),
            },
            token: config.api_token.clone(),
            readiness: readiness.clone(),
            shutdown: shutdown.clone(),
            max_request_bytes: config.max_request_bytes,
            extended: Default::default(),
            tracer: tracer.clone(),
            in_flight: ApiState::in_flight_limit(config.max_output_calls_in_flight),
            max_in_flight: config.max_output_calls_in_flight,
        });

        let http_addrs: Vec<SocketAddr> = http_listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let grpc_addrs: Vec<SocketAddr> = grpc_listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();

        let stop_servers = CancellationToken::new();
        let mut servers = tokio::task::JoinSet::new();
        let router = api::http::router(state.clone());
        let limits = api::http::ServerLimits::default();
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        // Separate from the HTTP slots: one API cannot starve the other.
        let grpc_slots = Arc::new(Semaphore::new(limits.max_connections));
        for listener in http_listeners {
            servers.spawn(api::http::serve(
                listener,
                router.clone(),
                stop_servers.clone(),
                limits,
                slots.clone(),
            ));
        }
        for listener in grpc_listeners {
            servers.spawn(api::grpc::serve(
                state.clone(),
                listener,
                stop_servers.clone(),
                limits,
                grpc_slots.clone(),
            ));
        }
        let mut metrics_addrs = Vec::new();
        if let Some(port) = config.metrics_port {
            // Metrics are optional: a taken port is reported, not fatal.
            match bind_all("metrics", &hosts, port).await {
                Ok(listeners) => {
                    for listener in listeners {
                        metrics_addrs.extend(listener.local_addr().ok());
                        servers.spawn(api::http::serve(
                            listener,
                            api::http::metrics_router(metrics.clone()),
                            stop_servers.clone(),
                            limits,
                            slots.clone(),
                        ));
                    }
                }
                Err(e) => tracing::warn!("metrics are off: {e}"),
            }
        }
        tracing::info!(http = ?http_addrs, grpc = ?grpc_addrs, metrics = ?metrics_addrs, "API listening");
        readiness.outbound.store(true, Ordering::Release);

        let inputs_stop = CancellationToken::new();
        let app_task = match config.app_port {
            None => {
                readiness.app.store(true, Ordering::Release);
                for (p, _, status) in &inputs {
                    tracing::info!(binding.name = %p.component.name, "no --app-port: input binding not consumed");
                    status.set(InputState::NotServed, "no app port configured");
                }
                None
            }
            Some(port) => {
                let target = AppTarget {
                    protocol: config.app_protocol,
                    address: config.app_channel_address.clone(),
                    port,
                    token: config.app_token.clone(),
                    timeout: config.app_request_timeout,
                    max_message_bytes: config.max_request_bytes.max(4 << 20),
                };
                let span =
                    tracing::info_span!("app_channel", app.id = %config.app_id, app.port = port);
                Some(tokio::spawn(
                    connect_app(AppWiring {
                        target,
                        channel_timeout: config.app_channel_timeout,
                        readiness: readiness.clone(),
                        outputs: state.outputs.clone(),
                        metrics: metrics.clone(),
                        concurrency: config
                            .app_max_concurrency
                            .filter(|n| *n > 0)
                            .map(|n| Arc::new(Semaphore::new(n as usize))),
                        inputs,
                        stop: inputs_stop.clone(),
                        tracer,
                    })
                    .instrument(span),
                ))
            }
        };
        tracing::info!(app.id = %config.app_id, elapsed = ?started.elapsed(), "outrigger initialized. Status: Running");

        let task = tokio::spawn(lifecycle(Lifecycle {
            state: state.clone(),
            shutdown,
            grace: config.graceful_shutdown,
            inputs_stop,
            app_task,
            stop_servers,
            servers,
            exporter,
        }));
        Ok(Sidecar {
            state,
            http_addrs,
            grpc_addrs,
            metrics_addrs,
            task,
        })
    }

    pub fn http_addrs(&self) -> &[SocketAddr] {
        &self.http_addrs
    }

    pub fn grpc_addrs(&self) -> &[SocketAddr] {
        &self.grpc_addrs
    }

    /// Where `/metrics` is served; empty when metrics are off.
    pub fn metrics_addrs(&self) -> &[SocketAddr] {
        &self.metrics_addrs
    }

    pub fn http_port(&self) -> u16 {
        self.http_addrs.first().map_or(0, SocketAddr::port)
    }

    pub fn grpc_port(&self) -> u16 {
        self.grpc_addrs.first().map_or(0, SocketAddr::port)
    }

    pub fn state(&self) -> &Arc<ApiState> {
        &self.state
    }

    /// Starts a graceful shutdown.
    pub fn shutdown(&self) {
        self.state.shutdown.cancel();
    }

    /// Waits until the sidecar has fully stopped.
    pub async fn wait(self) {
        let _ = self.wait_clean().await;
    }

    /// Waits until the sidecar has fully stopped; `false` when a task it owns
    /// (an API server, the app channel) failed, which makes the exit code 1.
    pub async fn wait_clean(self) -> bool {
        match self.task.await {
            Ok(clean) => clean,
            Err(e) => {
                tracing::error!(
                    "the sidecar's lifecycle {}",
                    crate::tasks::join_error_message(e)
                );
                false
            }
        }
    }
}

fn load_components(config: &SidecarConfig) -> Result<Vec<Planned>, ConfigErrors> {
    let (mut components, mut errors) = config::load(&config.resources_paths, &config.app_id);
    for (origin, text) in &config.extra_components.0 {
        let (more, more_errors) = config::load_str(origin, text, &config.app_id);
        components.extend(more);
        errors.extend(more_errors);
    }
    let (planned, plan_errors) = bindings::plan(components);
    errors.extend(plan_errors);
    if errors.is_empty() {
        Ok(planned)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// `localhost` → both loopback addresses; anything else must be an IP.
fn listen_ips(hosts: &[String]) -> Vec<(IpAddr, bool)> {
    let mut ips = Vec::new();
    for h in hosts
        .iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .filter(|h| !h.is_empty())
    {
        match h {
            "localhost" => {
                ips.push((IpAddr::V4(Ipv4Addr::LOCALHOST), true));
                // Optional: a host without IPv6 still serves on 127.0.0.1.
                ips.push((IpAddr::V6(Ipv6Addr::LOCALHOST), false));
            }
            other => match other
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<IpAddr>()
            {
                Ok(ip) => ips.push((ip, true)),
                Err(_) => tracing::warn!(
                    "--dapr-listen-addresses: {other:?} is not an IP address or localhost; ignored"
                ),
            },
        }
    }
    if ips.is_empty() {
        ips.push((IpAddr::V4(Ipv4Addr::LOCALHOST), true));
    }
    ips
}

/// Binds every address on one port. With port 0 the first bind picks the port
/// and the others reuse it, so that all addresses serve on the same port.
async fn bind_all(
    api: &'static str,
    ips: &[(IpAddr, bool)],
    port: u16,
) -> Result<Vec<TcpListener>, RuntimeError> {
    let mut listeners = Vec::new();
    let mut port = port;
    for (ip, required) in ips {
        let addr = SocketAddr::new(*ip, port);
        match TcpListener::bind(addr).await {
            Ok(l) => {
                if port == 0 {
                    port = l.local_addr().map(|a| a.port()).unwrap_or(0);
                }
                listeners.push(l);
            }
            Err(e) if !required => tracing::debug!("not listening on {addr}: {e}"),
            Err(source) => {
                return Err(RuntimeError::Bind {
                    api,
                    addr: addr.to_string(),
                    source,
                });
            }
        }
    }
    Ok(listeners)
}

struct AppWiring {
    target: AppTarget,
    channel_timeout: Duration,
    readiness: Arc<Readiness>,
    outputs: Arc<HashMap<String, Arc<dyn OutputBinding>>>,
    metrics: Arc<Metrics>,
    concurrency: Option<Arc<Semaphore>>,
    inputs: Vec<(Planned, Box<dyn InputBinding>, Arc<InputStatus>)>,
    stop: CancellationToken,
    tracer: Option<Arc<crate::otlp::Tracer>>,
}

/// Waits for the app, asks which input bindings it serves, then starts them.
/// Runs until the input bindings have stopped.
async fn connect_app(w: AppWiring) {
    let mut ready = app_channel::wait_for_app(&w.target, w.channel_timeout, &w.stop).await;
    while !ready && !w.stop.is_cancelled() {
        tracing::error!(
            "the app did not listen on {}:{} within {:?} (--app-channel-timeout); still waiting",
            w.target.address,
            w.target.port,
            w.channel_timeout
        );
        for (_, _, status) in &w.inputs {
            status.set(
                InputState::WaitingForApp,
                format!("app port {} not reachable", w.target.port),
            );
        }
        ready = app_channel::wait_for_app(&w.target, w.channel_timeout, &w.stop).await;
    }
    if !ready {
        return;
    }
    w.readiness.app.store(true, Ordering::Release);
    let channel = app_channel::connect(&w.target);

    let asked: Vec<Wanted> = w
        .inputs
        .iter()
        .filter(|(p, _, _)| !p.plan.input_is_explicit())
        .filter_map(|(p, _, _)| {
            p.plan.input_route().map(|r| Wanted {
                name: p.component.name.clone(),
                route: r.to_string(),
            })
        })
        .collect();
    let mut served = HashMap::new();
    if !asked.is_empty() {
        let mut backoff = Duration::from_millis(100);
        loop {
            match channel.subscriptions(&asked).await {
                Ok(s) => {
                    served = s;
                    break;
                }
                Err(e) => {
                    tracing::warn!("{e}; retrying in {backoff:?}");
                    tokio::select! {
                        _ = w.stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    // The input bindings are owned here: each one that ends before the stop
    // (a panic, an early return) is logged and shown, never forgotten.
    let mut running = tokio::task::JoinSet::new();
    for (p, input, status) in w.inputs {
        let name = p.component.name.clone();
        let app_name = if p.plan.input_is_explicit() {
            Some(name.clone())
        } else {
            served.get(&name).cloned()
        };
        let Some(app_name) = app_name else {
            status.set(InputState::NotServed, "the app does not serve this binding");
            continue;
        };
        let sink = Arc::new(AppSink {
            binding: name.clone(),
            app_name,
            route: p.plan.input_route().unwrap_or(&name).to_string(),
            channel: channel.clone(),
            outputs: w.outputs.clone(),
            concurrency: w.concurrency.clone(),
            metrics: w.metrics.app_channel(&name),
            tracer: w.tracer.clone(),
        });
        let span = tracing::info_span!("input", binding.name = %name);
        let run = input.run(sink, w.stop.clone());
        let stop = w.stop.clone();
        running.spawn(
            async move {
                let result = crate::tasks::catch_panic(run).await;
                input_ended(&name, &status, result, stop.is_cancelled());
            }
            .instrument(span),
        );
    }
    while let Some(joined) = running.join_next().await {
        if let Err(e) = joined {
            tracing::error!(
                "an input binding task failed: {}",
                crate::tasks::join_error_message(e)
            );
        }
    }
}

/// Books how an input binding's run ended: a panic or an end before the stop
/// is an error, shown in its status and counted.
fn input_ended(name: &str, status: &InputStatus, result: Result<(), String>, stopping: bool) {
    match result {
        Err(why) => {
            tracing::error!(binding.name = %name, "the input binding {why}");
            status.task_failed(format!("the input binding {why}"));
        }
        Ok(()) if stopping => {}
        Ok(()) => match status.state() {
            // Said why already (e.g. it could not subscribe).
            InputState::Error => {
                tracing::warn!(binding.name = %name, "the input binding ended before the sidecar stopped")
            }
            // Ended on purpose (a schedule with no further firing).
            InputState::Stopped => tracing::info!(binding.name = %name, "the input binding ended"),
            _ => {
                tracing::error!(binding.name = %name, "the input binding ended before the sidecar stopped");
                status.task_failed("the input binding ended before the sidecar stopped");
            }
        },
    }
}

struct Lifecycle {
    state: Arc<ApiState>,
    shutdown: CancellationToken,
    grace: Duration,
    inputs_stop: CancellationToken,
    app_task: Option<JoinHandle<()>>,
    stop_servers: CancellationToken,
    /// The API servers (HTTP, gRPC, metrics), one per listener.
    servers: tokio::task::JoinSet<()>,
    exporter: Option<crate::otlp::Exporter>,
}

/// Waits for the shutdown signal, then stops in order: inputs (finish in-flight
/// deliveries, commit), servers (stop accepting, finish in-flight requests),
/// then outputs and exported spans (both flush, side by side). All within the
/// grace period.
async fn lifecycle(mut l: Lifecycle) -> bool {
    // A server that ends before the stop (a panic) leaves an API unserved: the
    // sidecar stops, with exit code 1, rather than pretend to be healthy.
    let mut clean = true;
    tokio::select! {
        _ = l.shutdown.cancelled() => {}
        Some(joined) = l.servers.join_next() => {
            let why = match joined {
                Ok(()) => "ended".to_string(),
                Err(e) => crate::tasks::join_error_message(e),
            };
            tracing::error!("an API server {why} before the sidecar stopped: shutting down");
            l.state.metrics.task_failures.fetch_add(1, Ordering::Relaxed);
            clean = false;
            l.shutdown.cancel();
        }
    }
    let deadline = tokio::time::Instant::now() + l.grace;
    tracing::info!(grace = ?l.grace, "shutting down gracefully");
    l.state.readiness.app.store(false, Ordering::Release);

    l.inputs_stop.cancel();
    if let Some(task) = l.app_task {
        // Consumers bound their own drain by the same deadline.
        match tokio::time::timeout_at(deadline, task).await {
            Err(_) => tracing::warn!("input bindings did not stop within the grace period"),
            Ok(Err(e)) => {
                tracing::error!(
                    "the app channel task {}",
                    crate::tasks::join_error_message(e)
                );
                l.state
                    .metrics
                    .task_failures
                    .fetch_add(1, Ordering::Relaxed);
                clean = false;
            }
            Ok(Ok(())) => {}
        }
    }

    l.stop_servers.cancel();
    let drain = async {
        let mut failed = false;
        while let Some(joined) = l.servers.join_next().await {
            if let Err(e) = joined {
                tracing::error!("an API server {}", crate::tasks::join_error_message(e));
                failed = true;
            }
        }
        failed
    };
    match tokio::time::timeout_at(deadline, drain).await {
        Err(_) => tracing::warn!("in-flight API requests did not finish within the grace period"),
        Ok(true) => clean = false,
        Ok(false) => {}
    }

    // What is left of the one deadline (none once it passed: every write that
    // was acknowledged is on the broker already, so nothing acknowledged is lost).
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    // Every span is queued by now (inputs and servers have stopped): the
    // exporter flushes alongside the producers, in the same time.
    let spans = async {
        if let Some(exporter) = l.exporter {
            exporter.shutdown(left).await;
        }
    };
    futures::future::join(
        futures::future::join_all(l.state.outputs.values().map(|o| o.close(left))),
        spans,
    )
    .await;
    tracing::info!("outrigger stopped");
    clean
}

/// Runs a sidecar until SIGINT, SIGTERM or an API shutdown; returns the exit code.
pub async fn run_until_signal(config: SidecarConfig) -> i32 {
    let shutdown = CancellationToken::new();
    let sidecar = match Sidecar::start(config, shutdown.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("outrigger: {e}");
            return e.exit_code();
        }
    };
    cancel_on_signals(shutdown.clone());
    if sidecar.wait_clean().await { 0 } else { 1 }
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM and exits the process on
/// the second with code 1, as daprd does (an operator who asks twice
/// does not want to wait for the drain).
pub fn cancel_on_signals(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut signals = Signals::new();
        signals.recv().await;
        shutdown.cancel();
        signals.recv().await;
        tracing::warn!("second signal: exiting without waiting for the drain to finish");
        eprintln!("outrigger: second signal, exiting now");
        crate::logging::flush();
        std::process::exit(1);
    });
}

/// SIGINT and SIGTERM, registered once so that none is missed between two waits.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = next(&mut self.int) => tracing::info!("received SIGINT"),
                _ = next(&mut self.term) => tracing::info!("received SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
            _ = term => tracing::info!("received SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_binding_that_panics_or_ends_early_is_shown_and_counted() {
        let s = InputStatus::new("in", "bindings.kafka");
        s.set(InputState::Subscribed, "1 partition(s) assigned");
        input_ended("in", &s, Err("panicked: boom".into()), false);
        let snap = s.snapshot();
        assert_eq!(snap.state, InputState::Error);
        assert_eq!(snap.detail, "the input binding panicked: boom");
        assert_eq!(snap.task_failures, 1);
        assert_eq!(
            snap.last_task_failure.as_deref(),
            Some("the input binding panicked: boom")
        );

        // Ended while still subscribed, before any stop: a failure too.
        let s = InputStatus::new("in", "bindings.kafka");
        s.set(InputState::Subscribed, "");
        input_ended("in", &s, Ok(()), false);
        assert_eq!(s.snapshot().task_failures, 1);
        assert_eq!(s.state(), InputState::Error);

        // Ended on purpose (a schedule without further firing), or by the stop: none.
        for (state, stopping) in [(InputState::Stopped, false), (InputState::Subscribed, true)] {
            let s = InputStatus::new("in", "bindings.cron");
            s.set(state, "");
            input_ended("in", &s, Ok(()), stopping);
            assert_eq!(s.snapshot().task_failures, 0, "{state:?}");
            assert_eq!(s.state(), state);
        }
        // A panic during the stop is still one.
        let s = InputStatus::new("in", "bindings.kafka");
        input_ended("in", &s, Err("panicked".into()), true);
        assert_eq!(s.snapshot().task_failures, 1);
    }
}
