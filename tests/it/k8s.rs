//! Kubernetes, against a real API server (`scripts/k8s-dev.sh up`: etcd, kube-apiserver,
//! kube-controller-manager, deploy/install.yaml and the injector as a local process): the
//! tutorial's own manifests applied unchanged give injected Pods and a loaded Component, and
//! `outrigger sidecar --mode kubernetes`, with only the RBAC of the install manifest, takes
//! its components from the API server and follows their changes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Broker, HttpApp, SidecarProc, wait_until_every};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn kubectl_bin() -> PathBuf {
    let p = root().join(".tools/bin/kubectl");
    assert!(p.exists(), "kubectl is missing: run scripts/k8s-deps.sh");
    p
}

fn name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{:x}", nanos % 0xffff_ffff)
}

/// Waits for a condition of the cluster, asked every 200 ms.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_until_every(what, timeout, Duration::from_millis(200), check).await
}

/// A control plane of its own (state in a temporary folder); `down` when dropped.
struct ControlPlane {
    dir: tempfile::TempDir,
}

impl ControlPlane {
    fn up() -> ControlPlane {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(root().join("scripts/k8s-dev.sh"))
            .arg("up")
            .env("K8S_DEV_DIR", dir.path())
            .env("OUTRIGGER_BIN", env!("CARGO_BIN_EXE_outrigger"))
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/k8s-dev.sh");
        let cp = ControlPlane { dir };
        assert!(
            out.status.success(),
            "k8s-dev.sh up failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            printed.contains(&format!("export KUBECONFIG={}", cp.kubeconfig().display())),
            "{printed}"
        );
        cp
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(kubectl_bin());
        cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
        match stdin {
            None => cmd.stdin(Stdio::null()).output().unwrap(),
            Some(text) => {
                use std::io::Write;
                let mut child = cmd
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(text.as_bytes())
                    .unwrap();
                child.wait_with_output().unwrap()
            }
        }
    }

    /// Runs kubectl as the cluster admin; panics unless it succeeds.
    fn kubectl(&self, args: &[&str]) -> String {
        self.ok(self.kubectl_as(&self.kubeconfig(), args, None), args)
    }

    fn apply(&self, namespace: &str, yaml: &str) -> String {
        let args = ["apply", "-n", namespace, "-f", "-"];
        self.ok(
            self.kubectl_as(&self.kubeconfig(), &args, Some(yaml)),
            &args,
        )
    }

    fn ok(&self, out: Output, args: &[&str]) -> String {
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&a)).unwrap()
    }

    /// A kubeconfig for a new service account of `namespace`, bound to the install manifest's
    /// ClusterRole `outrigger-sidecar` (what deploy/README.md says to do per namespace).
    fn sidecar_kubeconfig(&self, namespace: &str) -> PathBuf {
        self.kubectl(&["create", "namespace", namespace]);
        self.kubectl(&["create", "serviceaccount", "app", "-n", namespace]);
        self.kubectl(&[
            "create",
            "rolebinding",
            "outrigger-sidecar",
            "-n",
            namespace,
            "--clusterrole",
            "outrigger-sidecar",
            "--serviceaccount",
            &format!("{namespace}:app"),
        ]);
        let token = self.kubectl(&[
            "create",
            "token",
            "app",
            "-n",
            namespace,
            "--duration",
            "1h",
        ]);
        let server = self.kubectl(&[
            "config",
            "view",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ]);
        let path = self.dir.path().join(format!("{namespace}.kubeconfig"));
        let ca = self.dir.path().join("pki/ca.crt");
        std::fs::write(
            &path,
            serde_yaml::to_string(&json!({
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "dev", "cluster": {"server": server.trim(), "certificate-authority": ca}}],
                "users": [{"name": "app", "user": {"token": token.trim()}}],
                "contexts": [{"name": "dev", "context": {"cluster": "dev", "user": "app", "namespace": namespace}}],
                "current-context": "dev",
            }))
            .unwrap(),
        )
        .unwrap();
        path
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root().join("scripts/k8s-dev.sh"))
            .arg("down")
            .env("K8S_DEV_DIR", self.dir.path())
            .stdin(Stdio::null())
            .output();
    }
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/k8s").join(name)
}

/// The value after `flag` in an argument list.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

fn check_injected(pod: &Value, app_id: &str, app_port: Option<&str>) {
    let pod_name = pod["metadata"]["name"].as_str().unwrap();
    let init = pod["spec"]["initContainers"]
        .as_array()
        .unwrap_or_else(|| panic!("{pod_name}: no initContainers"));
    let sidecar = &init[0];
    assert_eq!(sidecar["name"], "daprd", "{pod_name}");
    assert_eq!(
        sidecar["restartPolicy"], "Always",
        "{pod_name}: a native sidecar"
    );
    assert_eq!(sidecar["image"], "outrigger:latest");
    assert_eq!(sidecar["command"], json!(["/outrigger", "sidecar"]));
    let args: Vec<String> = serde_json::from_value(sidecar["args"].clone()).unwrap();
    // Every flag the injector wrote is one the binary accepts, with the values intended.
    let mut argv = vec!["outrigger".to_string(), "sidecar".to_string()];
    argv.extend(args.iter().cloned());
    let cli = outrigger::launcher::args::try_parse_cli(argv.iter().map(Into::into))
        .unwrap_or_else(|e| panic!("{pod_name}: the sidecar's args do not parse: {e}\n{args:?}"));
    let outrigger::cli::Command::Sidecar(parsed) = cli.command else {
        panic!("not a sidecar")
    };
    assert_eq!(parsed.app_id, app_id);
    assert_eq!(parsed.app_port.map(|p| p.to_string()).as_deref(), app_port);
    assert_eq!(
        parsed.kubernetes.mode,
        outrigger::kubernetes::Mode::Kubernetes
    );
    assert_eq!(parsed.kubernetes.dapr_public_port, Some(3501));
    // The API stays on loopback; only the health port is public.
    assert_eq!(parsed.dapr_listen_addresses, "localhost");
    assert_eq!(flag(&args, "--dapr-http-port"), Some("3500"));
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(
            sidecar[probe]["httpGet"]["port"], 3501,
            "{pod_name} {probe}"
        );
        assert!(
            sidecar[probe]["httpGet"]["path"]
                .as_str()
                .unwrap()
                .starts_with("/v1.0/healthz"),
            "{pod_name} {probe}"
        );
    }
    assert_eq!(
        env_value(sidecar, "NAMESPACE").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    for c in pod["spec"]["containers"].as_array().unwrap() {
        assert_eq!(
            env_value(c, "DAPR_HTTP_PORT").unwrap()["value"],
            "3500",
            "{pod_name}"
        );
        assert_eq!(
            env_value(c, "DAPR_GRPC_PORT").unwrap()["value"],
            "50001",
            "{pod_name}"
        );
    }
    assert_eq!(pod["status"]["phase"], "Pending", "nothing runs pods here");
}

#[tokio::test]
async fn k8s_tutorial_manifests_applied_unchanged_give_injected_pods_and_a_component() {
    let cp = ControlPlane::up();
    for f in ["kafka_bindings.yaml", "node.yaml", "python.yaml"] {
        cp.kubectl(&["apply", "-f", fixture(f).to_str().unwrap()]);
    }
    let component = cp.json(&["get", "components", "sample-topic"]);
    assert_eq!(component["kind"], "Component");
    assert_eq!(component["spec"]["type"], "bindings.kafka");
    assert_eq!(component["spec"]["metadata"][0]["name"], "brokers");

    // The controller manager makes the Deployments' Pods; the injector has patched them.
    for (label, app_id, port) in [
        ("bindingsnodeapp", "bindings-nodeapp", Some("3000")),
        ("bindingspythonapp", "bindings-pythonapp", None),
    ] {
        let pod = eventually(
            &format!("a Pod of {app_id}"),
            Duration::from_secs(60),
            || async {
                let pods = cp.json(&["get", "pods", "-l", &format!("app={label}")]);
                pods["items"].as_array().and_then(|i| i.first().cloned())
            },
        )
        .await;
        check_injected(&pod, app_id, port);
    }

    // A pod without the annotation is untouched.
    let plain = name("plain");
    cp.apply(
        "default",
        &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {plain}}}\nspec:\n  containers: [{{name: app, image: busybox}}]\n"),
    );
    let pod = cp.json(&["get", "pod", &plain]);
    assert!(pod["spec"].get("initContainers").is_none(), "{pod}");
    assert!(pod["spec"]["containers"][0].get("env").is_none(), "{pod}");
    assert_eq!(pod["spec"]["containers"].as_array().unwrap().len(), 1);

    // A bad annotation value is an admission error naming it, and no pod is made.
    let bad = name("bad");
    let out = cp.kubectl_as(
        &cp.kubeconfig(),
        &["apply", "-n", "default", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {bad}\n  annotations: {{dapr.io/enabled: \"true\", dapr.io/app-port: \"three\"}}\nspec:\n  containers: [{{name: app, image: busybox}}]\n"
        )),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted: {err}");
    assert!(
        err.contains("denied the request")
            && err.contains("dapr.io/app-port")
            && err.contains("\"three\""),
        "{err}"
    );
    let gone = cp.kubectl_as(&cp.kubeconfig(), &["get", "pod", &bad], None);
    assert!(!gone.status.success());

    // Unsupported annotations are admitted, with a warning kubectl prints.
    let warned = name("warned");
    let out = cp.kubectl_as(
        &cp.kubeconfig(),
        &["apply", "-n", "default", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {warned}\n  annotations: {{dapr.io/enabled: \"true\", dapr.io/app-id: w, dapr.io/config: tracing}}\nspec:\n  containers: [{{name: app, image: busybox}}]\n"
        )),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dapr.io/config is not used by outrigger"),
        "{out:?}"
    );
}

async fn metadata_components(http: &reqwest::Client, api: &str) -> Vec<String> {
    let Ok(r) = http.get(format!("http://{api}/v1.0/metadata")).send().await else {
        return Vec::new();
    };
    let Ok(v) = r.json::<Value>().await else {
        return Vec::new();
    };
    let mut names: Vec<String> = v["components"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The tutorial's component, pointed at the test broker: brokers from a Secret, plus a
/// secret SASL password that authRequired "false" leaves unused (it must never be shown).
fn tutorial_component(name: &str, topics: &str, publish: &str, group: &str) -> String {
    let mut doc: Value =
        serde_yaml::from_str(&std::fs::read_to_string(fixture("kafka_bindings.yaml")).unwrap())
            .unwrap();
    doc["metadata"]["name"] = json!(name);
    for item in doc["spec"]["metadata"].as_array_mut().unwrap() {
        match item["name"].as_str().unwrap() {
            "brokers" => {
                *item = json!({"name": "brokers", "secretKeyRef": {"name": "kafka-conn", "key": "brokers"}})
            }
            "topics" => item["value"] = json!(topics),
            "publishTopic" => item["value"] = json!(publish),
            "consumerGroup" => item["value"] = json!(group),
            _ => {}
        }
    }
    doc["spec"]["metadata"].as_array_mut().unwrap().push(
        json!({"name": "saslPassword", "secretKeyRef": {"name": "kafka-auth", "key": "password"}}),
    );
    doc["spec"]["metadata"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "initialOffset", "value": "oldest"}));
    serde_yaml::to_string(&doc).unwrap()
}

/// Whether the input binding's consumer has its partitions (outrigger's `inputBindings` status).
async fn assigned(http: &reqwest::Client, api: &str, name: &str) -> bool {
    let Ok(r) = http.get(format!("http://{api}/v1.0/metadata")).send().await else {
        return false;
    };
    let v: Value = r.json().await.unwrap_or_default();
    v["inputBindings"].as_array().is_some_and(|b| {
        b.iter().any(|b| {
            b["name"] == name
                && b["state"] == "subscribed"
                && b["detail"].as_str().is_some_and(|d| d.contains("assigned"))
        })
    })
}

async fn post_binding(http: &reqwest::Client, api: &str, binding: &str, text: &str) -> bool {
    http.post(format!("http://{api}/v1.0/bindings/{binding}"))
        .json(&json!({"operation": "create", "data": text}))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[tokio::test]
async fn k8s_sidecar_takes_components_from_the_api_server_with_only_the_sidecar_rbac() {
    let cp = ControlPlane::up();
    let broker = Broker::start();
    let (topic1, topic2) = (name("topic"), name("topic"));
    broker.create_topic(&topic1, 1);
    broker.create_topic(&topic2, 1);
    let ns = name("ns");
    let kubeconfig = cp.sidecar_kubeconfig(&ns);
    let password = name("secret-password-value");
    cp.kubectl(&[
        "create",
        "secret",
        "generic",
        "kafka-conn",
        "-n",
        &ns,
        &format!("--from-literal=brokers={}", broker.addr()),
    ]);
    cp.kubectl(&[
        "create",
        "secret",
        "generic",
        "kafka-auth",
        "-n",
        &ns,
        &format!("--from-literal=password={password}"),
    ]);
    cp.apply(
        &ns,
        &tutorial_component("sample-topic", &topic1, &topic1, &name("group")),
    );
    // Scoped to another app, and referring to a Secret that does not exist: never read.
    cp.apply(
        &ns,
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: other-app-cron}\nspec:\n  type: bindings.cron\n  version: v1\n  metadata:\n  - {name: schedule, value: \"@every 1s\"}\n  - name: nothing\n    secretKeyRef: {name: no-such-secret, key: x}\nscopes: [someone-else]\n",
    );

    // The service account has the install manifest's sidecar RBAC and nothing more.
    let pods = cp.kubectl_as(&kubeconfig, &["get", "pods", "-n", &ns], None);
    assert!(
        !pods.status.success() && String::from_utf8_lossy(&pods.stderr).contains("forbidden"),
        "{pods:?}"
    );

    let app = HttpApp::start().await;
    let mut sidecar = SidecarProc::builder_without_resources()
        .args(&["--mode", "kubernetes", "--kubeconfig"])
        .arg(kubeconfig.to_str().unwrap())
        .args(&["--namespace", &ns])
        .app_id("bindings-nodeapp")
        .app_port(app.port)
        .no_metrics()
        .args(&[
            "--dapr-public-port",
            "0",
            "--dapr-public-listen-addresses",
            "127.0.0.1",
        ])
        .log_level("debug")
        .start();
    let public = sidecar
        .logged_addr("public health port listening")
        .expect("the public health port in the log");
    let api = format!("127.0.0.1:{}", sidecar.http_port);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    // sample-topic came from the API server; the other app's component did not.
    let names = eventually(
        "sample-topic in /v1.0/metadata",
        Duration::from_secs(60),
        || async {
            let n = metadata_components(&http, &api).await;
            (!n.is_empty()).then_some(n)
        },
    )
    .await;
    assert_eq!(names, ["sample-topic"], "{}", sidecar.log_text());

    // The public port serves health only.
    let health = http
        .get(format!("http://{public}/v1.0/healthz/outbound"))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success(), "{health:?}");
    for path in ["/v1.0/metadata", "/v1.0/bindings/sample-topic"] {
        let r = http
            .post(format!("http://{public}{path}"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path} on the public port");
    }

    // Kafka messages reach the app (brokers came from the Secret).
    let mut n = 0;
    eventually(
        "a delivery to /sample-topic",
        Duration::from_secs(90),
        || {
            n += 1;
            let (http, api, app) = (&http, &api, &app);
            async move {
                assert!(
                    post_binding(http, api, "sample-topic", &format!("before-{n}")).await || n > 1
                );
                (!app.deliveries("sample-topic").is_empty()).then_some(())
            }
        },
    )
    .await;
    assert!(app.deliveries("sample-topic")[0].text().contains("before-"));

    // A Component added through the API is loaded without a restart ...
    cp.apply(
        &ns,
        &tutorial_component("sample-topic-2", &topic2, &topic2, &name("group")),
    );
    eventually("sample-topic-2 loaded", Duration::from_secs(60), || async {
        let n = metadata_components(&http, &api).await;
        (n == ["sample-topic", "sample-topic-2"]).then_some(())
    })
    .await;
    eventually(
        "sample-topic-2 has its partition",
        Duration::from_secs(60),
        || async { assigned(&http, &api, "sample-topic-2").await.then_some(()) },
    )
    .await;
    // ... and a change reaches it: sample-topic now publishes to sample-topic-2's topic.
    cp.apply(
        &ns,
        &tutorial_component("sample-topic", &topic1, &topic2, &name("group")),
    );
    let mut n = 0;
    eventually(
        "a message published by the changed sample-topic, delivered by sample-topic-2",
        Duration::from_secs(90),
        || {
            n += 1;
            let (http, api, app) = (&http, &api, &app);
            async move {
                post_binding(http, api, "sample-topic", &format!("after-{n}")).await;
                app.deliveries("sample-topic-2")
                    .iter()
                    .any(|c| c.text().contains("after-"))
                    .then_some(())
            }
        },
    )
    .await;
    assert!(
        sidecar.log_text().contains("Components changed"),
        "{}",
        sidecar.log_text()
    );

    // A deleted Component goes away.
    cp.kubectl(&["delete", "component", "sample-topic-2", "-n", &ns]);
    eventually(
        "sample-topic-2 unloaded",
        Duration::from_secs(60),
        || async { (metadata_components(&http, &api).await == ["sample-topic"]).then_some(()) },
    )
    .await;

    // A change that cannot load is reported and the running components stay.
    cp.apply(
        &ns,
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: broken}\nspec:\n  type: bindings.kafka\n  version: v1\n  metadata:\n  - name: brokers\n    secretKeyRef: {name: missing-secret, key: brokers}\n",
    );
    eventually(
        "the missing Secret reported",
        Duration::from_secs(30),
        || async {
            sidecar
                .log_text()
                .contains("Secret \"missing-secret\" does not exist")
                .then_some(())
        },
    )
    .await;
    assert_eq!(metadata_components(&http, &api).await, ["sample-topic"]);

    let metadata = http
        .get(format!("http://{api}/v1.0/metadata"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Blocking, as this test's runtime has one thread: deliveries the app has
    // in flight wait, and the grace period bounds the stop.
    let status = sidecar.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status:?}\n{}", sidecar.log_text());
    let log = sidecar.log_text();
    assert!(log.contains("outrigger stopped"), "{log}");
    for (what, text) in [("log", &log), ("/v1.0/metadata", &metadata)] {
        assert!(
            !text.contains(&password),
            "the secret appears in the {what}"
        );
    }
    assert!(
        !log.contains("other-app-cron") || log.contains("not in scope"),
        "{log}"
    );
    assert!(
        !log.contains("no-such-secret"),
        "a Secret of another app's component was read:\n{log}"
    );
}
