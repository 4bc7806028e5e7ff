//! `outrigger injector`: the mutating admission webhook that adds outrigger to pods annotated
//! `dapr.io/enabled: "true"`. Serves HTTPS with its own certificate (generated at start, or
//! read from files) and publishes the CA into its `MutatingWebhookConfiguration`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use clap::Args;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::patch::{self, InjectorDefaults, Outcome};

#[derive(Debug, Clone, Args)]
pub struct InjectorArgs {
    /// Port of the webhook (HTTPS: POST /mutate, GET /healthz).
    #[arg(long, default_value_t = 4000)]
    pub port: u16,

    /// Address the webhook listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub listen_address: String,

    /// Image of the sidecar container, unless a pod sets `dapr.io/sidecar-image`.
    #[arg(long, env = "SIDECAR_IMAGE", default_value = "outrigger:latest")]
    pub sidecar_image: String,

    /// `imagePullPolicy` of the sidecar container (Always, IfNotPresent, Never); unset by default.
    #[arg(long, value_parser = ["Always", "IfNotPresent", "Never"])]
    pub sidecar_image_pull_policy: Option<String>,

    /// PEM certificate (chain) of the webhook; with --tls-key-file. Without both, a CA and a
    /// certificate are generated at start.
    #[arg(long, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    #[arg(long, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// With --tls-cert-file: the CA that signed it, published as the caBundle.
    #[arg(long)]
    pub tls_ca_file: Option<PathBuf>,

    /// Name of the injector's Service; the generated certificate is valid for
    /// NAME, NAME.NAMESPACE, NAME.NAMESPACE.svc and NAME.NAMESPACE.svc.cluster.local.
    #[arg(long, default_value = "outrigger-injector")]
    pub service_name: String,

    /// Namespace of the injector's Service.
    #[arg(long, env = "NAMESPACE", default_value = "outrigger-system")]
    pub namespace: String,

    /// More names or IP addresses the generated certificate is valid for (repeatable),
    /// e.g. 127.0.0.1 for a webhook registered by `url`.
    #[arg(long = "tls-san")]
    pub tls_sans: Vec<String>,

    /// The MutatingWebhookConfiguration whose webhooks get this CA as caBundle at start.
    /// Empty: publish nothing (the caBundle is managed elsewhere).
    #[arg(long, default_value = "outrigger-sidecar-injector")]
    pub webhook_config: String,

    /// Also write the CA (PEM) to this file.
    #[arg(long)]
    pub ca_out_file: Option<PathBuf>,

    /// Kubeconfig used to publish the caBundle; in a pod, the service account is used.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    #[arg(long, default_value = "info", value_parser = ["debug", "info", "warn", "warning", "error", "fatal"])]
    pub log_level: String,

    #[arg(long)]
    pub log_as_json: bool,
}

/// The certificate the webhook serves and the CA the API server must trust.
pub struct WebhookTls {
    pub cert_chain_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl WebhookTls {
    /// A fresh CA and a serving certificate for `sans`, valid for ten years.
    pub fn generate(sans: Vec<String>) -> Result<WebhookTls, rcgen::Error> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "outrigger injector CA");
        ca_params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans.clone())?;
        params.distinguished_name.push(
            DnType::CommonName,
            sans.first().cloned().unwrap_or_default(),
        );
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(WebhookTls {
            cert_chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: ca_cert.pem(),
        })
    }

    fn acceptor(&self) -> anyhow::Result<TlsAcceptor> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(self.cert_chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

pub async fn run(args: InjectorArgs) -> i32 {
    match run_inner(args).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("outrigger injector: {e:#}");
            1
        }
    }
}

async fn run_inner(args: InjectorArgs) -> anyhow::Result<()> {
    let tls = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(c), Some(k)) => WebhookTls {
            cert_chain_pem: std::fs::read_to_string(c)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", c.display()))?,
            key_pem: std::fs::read_to_string(k)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", k.display()))?,
            ca_pem: match &args.tls_ca_file {
                Some(ca) => std::fs::read_to_string(ca)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", ca.display()))?,
                None => String::new(),
            },
        },
        _ => {
            let (svc, ns) = (&args.service_name, &args.namespace);
            let mut sans = vec![
                format!("{svc}.{ns}.svc"),
                svc.clone(),
                format!("{svc}.{ns}"),
                format!("{svc}.{ns}.svc.cluster.local"),
            ];
            sans.extend(args.tls_sans.iter().cloned());
            WebhookTls::generate(sans)?
        }
    };
    if let Some(path) = &args.ca_out_file {
        std::fs::write(path, &tls.ca_pem)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    let acceptor = tls.acceptor()?;
    let addr: SocketAddr = format!("{}:{}", args.listen_address, args.port)
        .parse()
        .or_else(|_| format!("[{}]:{}", args.listen_address, args.port).parse())
        .map_err(|_| {
            anyhow::anyhow!(
                "--listen-address {:?} is not an IP address",
                args.listen_address
            )
        })?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let defaults = InjectorDefaults {
        image: args.sidecar_image.clone(),
        pull_policy: args.sidecar_image_pull_policy.clone(),
    };
    tracing::info!(addr = %listener.local_addr()?, image = %defaults.image, "injector listening (HTTPS)");

    // Serve first: the API server calls the webhook as soon as it has the CA.
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve(listener, acceptor, router(defaults), stop.clone()));
    if !args.webhook_config.is_empty() && !tls.ca_pem.is_empty() {
        let client = super::client(args.kubeconfig.as_deref()).await?;
        publish_ca_bundle(&client, &args.webhook_config, &tls.ca_pem).await?;
    }
    crate::runtime::wait_for_signal().await;
    stop.cancel();
    let _ = server.await;
    Ok(())
}

/// Sets `caBundle` on every webhook of the configuration, retrying while it does not exist
/// yet (the install manifest may create it after the injector starts).
pub async fn publish_ca_bundle(
    client: &kube::Client,
    name: &str,
    ca_pem: &str,
) -> anyhow::Result<()> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        match api.get(name).await {
            Ok(cfg) => {
                let webhooks: Vec<Value> = cfg
                    .webhooks
                    .unwrap_or_default()
                    .iter()
                    .map(|w| json!({"name": w.name, "clientConfig": {"caBundle": bundle}}))
                    .collect();
                let n = webhooks.len();
                // A strategic merge keyed by webhook name changes only caBundle.
                api.patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Strategic(json!({"webhooks": webhooks})),
                )
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot set the caBundle of MutatingWebhookConfiguration {name}: {e}"
                    )
                })?;
                tracing::info!(
                    webhook_config = name,
                    webhooks = n,
                    "published the CA bundle"
                );
                return Ok(());
            }
            Err(kube::Error::Api(s)) if s.code == 404 && tokio::time::Instant::now() < deadline => {
                tracing::info!("MutatingWebhookConfiguration {name} does not exist yet; waiting");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "cannot read MutatingWebhookConfiguration {name}: {e}"
                ));
            }
        }
    }
}

pub fn router(defaults: InjectorDefaults) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { StatusCode::NO_CONTENT }))
        .with_state(Arc::new(defaults))
}

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    stop: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => return,
                };
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

async fn mutate(
    State(defaults): State<Arc<InjectorDefaults>>,
    body: axum::body::Bytes,
) -> Response {
    let review: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("not an AdmissionReview: {e}"),
            )
                .into_response();
        }
    };
    axum::Json(review_response(&review, &defaults)).into_response()
}

/// The AdmissionReview answer to one request.
pub fn review_response(review: &Value, defaults: &InjectorDefaults) -> Value {
    let req = &review["request"];
    let uid = req["uid"].clone();
    let api_version = review["apiVersion"]
        .as_str()
        .unwrap_or("admission.k8s.io/v1");
    let pod_name = req["object"]["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .or(req["object"]["metadata"]["generateName"].as_str())
        .unwrap_or("");
    let namespace = req["namespace"].as_str().unwrap_or("");
    let response = if req["kind"]["kind"].as_str() != Some("Pod")
        || req["operation"].as_str() != Some("CREATE")
    {
        json!({"uid": uid, "allowed": true})
    } else {
        match patch::mutate(&req["object"], defaults) {
            Outcome::Unchanged(why) => {
                tracing::debug!(pod = pod_name, namespace, "not injected: {why}");
                json!({"uid": uid, "allowed": true})
            }
            Outcome::Patch { ops, warnings } => {
                tracing::info!(pod = pod_name, namespace, "injecting the outrigger sidecar");
                let patch = base64::engine::general_purpose::STANDARD
                    .encode(serde_json::to_vec(&ops).unwrap_or_default());
                let mut r =
                    json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": patch});
                if !warnings.is_empty() {
                    r["warnings"] = json!(warnings);
                }
                r
            }
            Outcome::Deny(errors) => {
                let message = format!("outrigger sidecar injector: {}", errors.join("; "));
                tracing::info!(pod = pod_name, namespace, "refused: {message}");
                json!({"uid": uid, "allowed": false, "status": {"code": 400, "reason": "BadRequest", "message": message}})
            }
        }
    };
    json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": response})
}
