//! Kubernetes: `outrigger sidecar --mode kubernetes` (components from the API server,
//! secrets from Secrets, changes applied while running), the public health port, and
//! `outrigger injector` (the admission webhook that adds the sidecar to annotated pods).

pub mod components;
pub mod injector;
pub mod patch;
mod sidecar;

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

pub use sidecar::run as run_sidecar;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Components from --resources-path.
    Standalone,
    /// Components from the API server (the Components of the pod's namespace).
    Kubernetes,
}

/// Flags of `outrigger sidecar` for Kubernetes.
#[derive(Debug, Clone, Args)]
pub struct KubernetesArgs {
    /// Where components come from: standalone (--resources-path) or kubernetes (the
    /// `Component`s of --namespace, read from the API server and watched).
    #[arg(long, value_enum, default_value = "standalone")]
    pub mode: Mode,

    /// Kubeconfig for --mode kubernetes outside a cluster; in a pod, the service account is
    /// used (else $KUBECONFIG, ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Namespace whose Components are read; default: the pod's (the injector sets NAMESPACE),
    /// else the kubeconfig's.
    #[arg(long, env = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Port that serves only /v1.0/healthz and /v1.0/healthz/outbound on
    /// --dapr-public-listen-addresses, for the kubelet's probes, while the APIs stay on
    /// --dapr-listen-addresses. Off when unset (the injector sets 3501).
    #[arg(long, value_name = "PORT")]
    pub dapr_public_port: Option<u16>,

    /// Comma-separated IP addresses of --dapr-public-port.
    #[arg(long, default_value = "0.0.0.0")]
    pub dapr_public_listen_addresses: String,
}

impl KubernetesArgs {
    /// Whether this module runs the sidecar rather than the plain runtime.
    pub fn wanted(&self) -> bool {
        self.mode == Mode::Kubernetes || self.dapr_public_port.is_some()
    }
}

/// A client from --kubeconfig, else from the environment (in-cluster, $KUBECONFIG, ~/.kube/config).
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| anyhow::anyhow!("cannot read kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| anyhow::anyhow!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            anyhow::anyhow!("no Kubernetes credentials (in-cluster or kubeconfig): {e}")
        })?,
    };
    kube::Client::try_from(config)
        .map_err(|e| anyhow::anyhow!("cannot make a Kubernetes client: {e}"))
}

/// The namespace of a kubeconfig's context or of the pod (in-cluster).
pub async fn default_namespace(kubeconfig: Option<&Path>) -> String {
    let config = match kubeconfig {
        Some(path) => match kube::config::Kubeconfig::read_from(path) {
            Ok(kc) => kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .ok(),
            Err(_) => None,
        },
        None => kube::Config::infer().await.ok(),
    };
    config.map_or_else(|| "default".into(), |c| c.default_namespace)
}
