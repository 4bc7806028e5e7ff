//! The sidecar as the injector runs it: components from the API server, restarted in-process
//! with the new set when a Component of the namespace changes, and the public health port.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::Mode;
use super::components::{Snapshot, watch_components};
use crate::cli::SidecarArgs;
use crate::runtime::{ComponentDocs, Sidecar, SidecarConfig};

/// How long the first list of Components may take before the sidecar gives up.
const FIRST_LIST_TIMEOUT: Duration = Duration::from_secs(60);

type Current = Arc<RwLock<Option<Router>>>;

pub async fn run(args: SidecarArgs) -> i32 {
    let shutdown = CancellationToken::new();
    crate::runtime::cancel_on_signals(shutdown.clone());
    match run_inner(args, shutdown).await {
        Ok(code) => code,
        Err((code, message)) => {
            tracing::error!("{message}");
            eprintln!("outrigger: {message}");
            code
        }
    }
}

async fn run_inner(args: SidecarArgs, shutdown: CancellationToken) -> Result<i32, (i32, String)> {
    let k = &args.kubernetes;
    let mut config = args.to_config();
    let current: Current = Arc::new(RwLock::new(None));
    let public_stop = CancellationToken::new();
    let _public_guard = public_stop.clone().drop_guard();
    // The public health servers, owned here: one that dies ends the sidecar.
    let mut public = tokio::task::JoinSet::new();
    if let Some(port) = k.dapr_public_port {
        public = serve_public(
            &k.dapr_public_listen_addresses,
            port,
            current.clone(),
            public_stop.clone(),
        )
        .await
        .map_err(|e| (1, e))?;
    }

    if k.mode == Mode::Standalone {
        let sidecar = start(config, &current, shutdown.clone()).await?;
        let clean = tokio::select! {
            clean = sidecar.wait_clean() => clean,
            why = public_ended(&mut public) => {
                tracing::error!("{why}: shutting down");
                shutdown.cancel();
                false
            }
        };
        return Ok(if clean { 0 } else { 1 });
    }

    // In a pod, components come from the API server only, unless paths are given.
    if args.resources_path.is_empty() {
        config.resources_paths.clear();
    }
    let client = super::client(k.kubeconfig.as_deref())
        .await
        .map_err(|e| (1, format!("{e:#}")))?;
    let namespace = match &k.namespace {
        Some(ns) if !ns.is_empty() => ns.clone(),
        _ => super::default_namespace(k.kubeconfig.as_deref()).await,
    };
    tracing::info!(namespace = %namespace, app.id = %config.app_id, "reading Components from the API server");
    let mut updates = watch_components(client, namespace.clone(), config.app_id.clone());
    let first = tokio::select! {
        _ = shutdown.cancelled() => return Ok(0),
        r = tokio::time::timeout(FIRST_LIST_TIMEOUT, updates.wait_for(Option::is_some)) => match r {
            Ok(Ok(s)) => s.clone().unwrap_or_default(),
            _ => return Err((1, format!(
                "could not list the Components of namespace {namespace} within {FIRST_LIST_TIMEOUT:?} \
                 (see the warnings above; the sidecar needs get, list and watch on components.dapr.io)"
            ))),
        },
    };
    if !first.errors.is_empty() {
        return Err((64, first.errors.join("\n")));
    }
    let mut applied = first;
    let mut seen = applied.clone();
    config.extra_components = ComponentDocs(applied.docs.clone());
    let mut generation = CancellationToken::new();
    let mut sidecar = start(config.clone(), &current, generation.clone()).await?;
    // A restart serves on the same ports, also when 0 picked them.
    config.http_port = sidecar.http_port();
    config.grpc_port = sidecar.grpc_port();
    if let Some(port) = sidecar.metrics_addrs().first().map(|a| a.port()) {
        config.metrics_port = Some(port);
    }
    let mut watching = true;
    loop {
        let mut failed = false;
        let next = tokio::select! {
            _ = shutdown.cancelled() => None,
            // /v1.0/shutdown, or a task of the sidecar failed: it stops by itself.
            _ = generation.cancelled() => None,
            why = public_ended(&mut public) => {
                tracing::error!("{why}: shutting down");
                sidecar.state().metrics.task_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                failed = true;
                None
            }
            next = next_change(&mut updates, &seen), if watching => match next {
                Some(next) => Some(next),
                None => {
                    // The sidecar goes on with the Components it has; the error and
                    // the counter say that changes are no longer applied.
                    tracing::error!("the Component watcher ended: changes to Components are no longer applied until the sidecar restarts");
                    sidecar.state().metrics.task_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    watching = false;
                    continue;
                }
            },
        };
        let Some(next) = next else {
            generation.cancel();
            let clean = sidecar.wait_clean().await && !failed;
            return Ok(if clean { 0 } else { 1 });
        };
        seen = next.clone();
        describe_change(&applied, &next);
        // The new set must load before the running one is stopped.
        if let Err(e) = check_loads(&config, &next) {
            tracing::error!(
                "the changed Components are not applied, the sidecar keeps its current ones: {e}"
            );
            continue;
        }
        tracing::info!(
            "restarting the sidecar's bindings with the changed Components (the API pauses for a moment)"
        );
        *current.write().unwrap_or_else(|e| e.into_inner()) = None;
        generation.cancel();
        sidecar.wait().await;
        generation = CancellationToken::new();
        let mut candidate = config.clone();
        candidate.extra_components = ComponentDocs(next.docs.clone());
        sidecar = match start(candidate.clone(), &current, generation.clone()).await {
            Ok(s) => {
                applied = next;
                config = candidate;
                s
            }
            Err((_, e)) => {
                tracing::error!(
                    "the changed Components did not start ({e}); going back to the previous ones"
                );
                start(config.clone(), &current, generation.clone()).await?
            }
        };
    }
}

async fn start(
    config: SidecarConfig,
    current: &Current,
    token: CancellationToken,
) -> Result<Sidecar, (i32, String)> {
    let sidecar = Sidecar::start(config, token)
        .await
        .map_err(|e| (e.exit_code(), e.to_string()))?;
    *current.write().unwrap_or_else(|e| e.into_inner()) =
        Some(crate::api::http::router(sidecar.state().clone()));
    Ok(sidecar)
}

/// The next snapshot that differs from `seen`; never resolves once the watch has ended.
/// The next set of Components that differs from `seen`; `None` once the
/// watcher has ended.
async fn next_change(
    updates: &mut watch::Receiver<Option<Snapshot>>,
    seen: &Snapshot,
) -> Option<Snapshot> {
    loop {
        updates.changed().await.ok()?;
        let s = updates.borrow_and_update().clone();
        if let Some(s) = s
            && s != *seen
        {
            return Some(s);
        }
    }
}

/// Resolves when a public health server has ended (never while none runs).
async fn public_ended(public: &mut tokio::task::JoinSet<()>) -> String {
    match public.join_next().await {
        None => std::future::pending().await,
        Some(Ok(())) => "a public health server ended".to_string(),
        Some(Err(e)) => format!(
            "a public health server {}",
            crate::tasks::join_error_message(e)
        ),
    }
}

fn describe_change(old: &Snapshot, new: &Snapshot) {
    let (o, n) = (old.names(), new.names());
    let added: Vec<&String> = n.iter().filter(|x| !o.contains(x)).collect();
    let removed: Vec<&String> = o.iter().filter(|x| !n.contains(x)).collect();
    let changed: Vec<&String> = n
        .iter()
        .filter(|x| o.contains(x))
        .filter(|x| {
            let text = |s: &Snapshot| {
                s.docs
                    .iter()
                    .find(|(p, _)| p.ends_with(x.as_str()))
                    .map(|(_, t)| t.clone())
            };
            text(old) != text(new)
        })
        .collect();
    tracing::info!(?added, ?changed, ?removed, "Components changed");
    for e in &new.errors {
        tracing::error!("{e}");
    }
}

/// Whether the snapshot's components would load (YAML, types, metadata), without starting them.
fn check_loads(config: &SidecarConfig, next: &Snapshot) -> Result<(), String> {
    if !next.errors.is_empty() {
        return Err(next.errors.join("; "));
    }
    let mut errors = Vec::new();
    let mut all = Vec::new();
    for (origin, text) in &next.docs {
        let (c, e) = crate::config::load_str(origin, text, &config.app_id);
        all.extend(c);
        errors.extend(e);
    }
    let (_, plan_errors) = crate::bindings::plan(all);
    errors.extend(plan_errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(crate::config::ConfigErrors(errors).to_string())
    }
}

/// Serves `/v1.0/healthz*` of the current sidecar on every address; anything else is 404.
async fn serve_public(
    hosts: &str,
    port: u16,
    current: Current,
    stop: CancellationToken,
) -> Result<tokio::task::JoinSet<()>, String> {
    let mut servers = tokio::task::JoinSet::new();
    let router = Router::new().fallback(public).with_state(current);
    let limits = crate::api::http::ServerLimits::default();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut port = port;
    for host in hosts
        .split(',')
        .map(|h| h.trim().trim_matches(|c| c == '[' || c == ']'))
        .filter(|h| !h.is_empty())
    {
        let ip: IpAddr = host.parse().map_err(|_| {
            format!("--dapr-public-listen-addresses: {host:?} is not an IP address")
        })?;
        let listener = TcpListener::bind(SocketAddr::new(ip, port))
            .await
            .map_err(|e| format!("cannot listen on {ip}:{port} for the public health port: {e}"))?;
        if port == 0 {
            port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        }
        tracing::info!(addr = ?listener.local_addr().ok(), "public health port listening (/v1.0/healthz only)");
        servers.spawn(crate::api::http::serve(
            listener,
            router.clone(),
            stop.clone(),
            limits,
            slots.clone(),
        ));
    }
    Ok(servers)
}

async fn public(State(current): State<Current>, req: Request) -> Response {
    let path = req.uri().path();
    if !(path == "/v1.0/healthz" || path.starts_with("/v1.0/healthz/")) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let router = current.read().unwrap_or_else(|e| e.into_inner()).clone();
    match router {
        Some(r) => match r.oneshot(req.map(Body::new)).await {
            Ok(resp) => resp.into_response(),
            Err(never) => match never {},
        },
        // Between two sets of components.
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watcher_that_ends_is_heard_not_waited_for_forever() {
        let (tx, mut rx) = watch::channel(None);
        let seen = Snapshot::default();
        let changed = Snapshot {
            docs: vec![("kubernetes/ns/components/a".into(), "text".into())],
            errors: Vec::new(),
        };
        tx.send(Some(changed.clone())).unwrap();
        assert_eq!(next_change(&mut rx, &seen).await, Some(changed));
        drop(tx);
        assert_eq!(next_change(&mut rx, &seen).await, None);
    }

    #[tokio::test]
    async fn a_public_server_that_dies_is_reported_with_its_panic() {
        let mut public = tokio::task::JoinSet::new();
        public.spawn(async { panic!("listener gone") });
        assert_eq!(
            public_ended(&mut public).await,
            "a public health server panicked: listener gone"
        );
        // With none left it never resolves.
        let none = tokio::time::timeout(Duration::from_millis(50), public_ended(&mut public));
        assert!(none.await.is_err());
    }
}
