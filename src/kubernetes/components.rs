//! Components from the API server: list, then watch, the `Component`s (`dapr.io/v1alpha1`)
//! of one namespace, keep those in scope for the app, resolve `secretKeyRef` from the
//! namespace's Secrets, and hand the result on as component documents.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::watch;

/// The resolved, in-scope components of the namespace: each a YAML document with the name
/// errors show for it (`kubernetes/<namespace>/components/<name>`), plus problems found
/// while resolving (a missing Secret, an unsupported secret store).
#[derive(Clone, Default, PartialEq)]
pub struct Snapshot {
    pub docs: Vec<(PathBuf, String)>,
    pub errors: Vec<String>,
}

impl std::fmt::Debug for Snapshot {
    // The documents hold resolved secrets: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field(
                "docs",
                &self.docs.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .field("errors", &self.errors)
            .finish()
    }
}

impl Snapshot {
    pub fn names(&self) -> Vec<String> {
        self.docs
            .iter()
            .filter_map(|(p, _)| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect()
    }
}

pub fn component_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("dapr.io", "v1alpha1", "Component"),
        "components",
    )
}

/// Starts the list-then-watch of the namespace's Components. The receiver sees `None`
/// until the first full list has arrived, then every change.
pub fn watch_components(
    client: kube::Client,
    namespace: String,
    app_id: String,
) -> watch::Receiver<Option<Snapshot>> {
    let (tx, rx) = watch::channel(None);
    // Its end (a panic included) closes the channel: the sidecar hears of it.
    let run = async move {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &namespace, &component_resource());
        let secrets: Api<Secret> = Api::namespaced(client, &namespace);
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        let mut current: BTreeMap<String, DynamicObject> = BTreeMap::new();
        let mut listing: Option<BTreeMap<String, DynamicObject>> = None;
        let mut failures = 0u32;
        while let Some(event) = stream.next().await {
            let changed = match event {
                Ok(watcher::Event::Init) => {
                    listing = Some(BTreeMap::new());
                    false
                }
                Ok(watcher::Event::InitApply(obj)) => {
                    if let Some(l) = listing.as_mut() {
                        l.insert(obj.metadata.name.clone().unwrap_or_default(), obj);
                    }
                    false
                }
                Ok(watcher::Event::InitDone) => {
                    failures = 0;
                    current = listing.take().unwrap_or_default();
                    true
                }
                Ok(watcher::Event::Apply(obj)) => {
                    current.insert(obj.metadata.name.clone().unwrap_or_default(), obj);
                    true
                }
                Ok(watcher::Event::Delete(obj)) => {
                    current.remove(obj.metadata.name.as_deref().unwrap_or_default());
                    true
                }
                Err(e) => {
                    // The watcher retries by itself; say why, with growing pauses.
                    failures += 1;
                    tracing::warn!(namespace = %namespace, "cannot list or watch Components: {e}");
                    let pause = Duration::from_millis(500 * u64::from(failures.min(20)));
                    tokio::time::sleep(pause).await;
                    false
                }
            };
            if !changed {
                continue;
            }
            let snapshot = resolve(&current, &secrets, &namespace, &app_id).await;
            let differs = tx.borrow().as_ref() != Some(&snapshot);
            if differs && tx.send(Some(snapshot)).is_err() {
                return;
            }
        }
    };
    tokio::spawn(async move {
        if let Err(why) = crate::tasks::catch_panic(run).await {
            tracing::error!("the Component watcher {why}");
        }
    });
    rx
}

async fn resolve(
    objects: &BTreeMap<String, DynamicObject>,
    secrets: &Api<Secret>,
    namespace: &str,
    app_id: &str,
) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for (name, obj) in objects {
        let scopes: Vec<&str> = obj.data["scopes"]
            .as_array()
            .map(|s| s.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        // Secrets of a component scoped to another app are never read.
        if !scopes.is_empty() && !scopes.contains(&app_id) {
            tracing::debug!(component = %name, "not in scope for {app_id}");
            continue;
        }
        let origin = PathBuf::from(format!("kubernetes/{namespace}/components/{name}"));
        match render(name, obj, secrets).await {
            Ok(text) => snapshot.docs.push((origin, text)),
            Err(e) => snapshot
                .errors
                .push(format!("component {name} (namespace {namespace}): {e}")),
        }
    }
    snapshot
}

/// The component as a YAML document the file loader reads, secrets filled in.
async fn render(name: &str, obj: &DynamicObject, secrets: &Api<Secret>) -> Result<String, String> {
    let store = obj.data["auth"]["secretStore"].as_str().unwrap_or("");
    let mut spec = obj.data["spec"].clone();
    if let Some(items) = spec.get_mut("metadata").and_then(Value::as_array_mut) {
        for item in items.iter_mut() {
            let Some(reference) = item.get("secretKeyRef").cloned() else {
                continue;
            };
            let field = item["name"].as_str().unwrap_or_default().to_string();
            if !(store.is_empty() || store == "kubernetes") {
                return Err(format!(
                    "metadata {field}: secret store {store:?} is not supported; \
                     only Kubernetes Secrets (auth.secretStore empty or \"kubernetes\")"
                ));
            }
            let secret_name = reference["name"].as_str().unwrap_or_default();
            // As in Dapr, a reference without a key reads the key named like the Secret.
            let key = reference["key"]
                .as_str()
                .filter(|k| !k.is_empty())
                .unwrap_or(secret_name);
            let value = read_secret(secrets, secret_name, key)
                .await
                .map_err(|e| format!("metadata {field}: {e}"))?;
            *item = json!({"name": field, "value": value});
        }
    }
    let mut doc = json!({
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name},
        "spec": spec,
    });
    if let Some(scopes) = obj.data.get("scopes") {
        doc["scopes"] = scopes.clone();
    }
    serde_yaml::to_string(&doc).map_err(|e| format!("cannot render: {e}"))
}

async fn read_secret(secrets: &Api<Secret>, name: &str, key: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("secretKeyRef has no name".into());
    }
    let secret = secrets.get(name).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 404 => format!("Secret {name:?} does not exist"),
        kube::Error::Api(s) if s.code == 403 => {
            format!("not allowed to read Secret {name:?} (RBAC): {}", s.message)
        }
        other => format!("cannot read Secret {name:?}: {other}"),
    })?;
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(v.0.clone())
            .map_err(|_| format!("key {key:?} of Secret {name:?} is not UTF-8 text"));
    }
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Ok(v.clone());
    }
    Err(format!("Secret {name:?} has no key {key:?}"))
}
