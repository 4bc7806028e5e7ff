//! The container image and the Kubernetes manifests (`Dockerfile`, `deploy/`).
//!
//! No Docker engine or cluster is needed: the manifests go through an offline schema
//! validator (`kubernetes-validate`, which bundles the Kubernetes JSON schemas; strict mode,
//! so unknown fields fail) for Kubernetes 1.29, the first with native sidecars, and for the
//! newest version it knows, and broken copies prove it can fail. Cheap consistency checks tie
//! the Dockerfile and the manifests to the binary (every sidecar flag is one `outrigger
//! sidecar --help` lists; ports, paths, probes and grace periods agree; the libraries the
//! binary links are in the runtime image). Finally the real binary runs with each manifest's
//! own sidecar arguments and answers the probe paths as the manifests assume.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;

use crate::common::*;
use crate::sdk_procs::*;

/// What the sidecar listens on when the manifest sets no port (the binary's defaults).
const DEFAULT_HTTP_PORT: u64 = 3500;
const DEFAULT_GRPC_PORT: u64 = 50001;
const DEFAULT_GRACE_SECONDS: u64 = 5;
/// After the grace period, shutdown may take this much longer: inputs get 2 s more to
/// close, the servers 0.5 s, the Kafka producers at least 1 s (src/runtime.rs `lifecycle`).
const SHUTDOWN_OVERRUN_SECONDS: u64 = 4;
/// The uid of distroless's `nonroot` user, which the image and the pods run as.
const NONROOT_UID: u64 = 65532;

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every manifest: the `.yaml` files directly in deploy/ (what `kubectl apply -f deploy/` takes).
fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("deploy/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "expected the ConfigMap and two Deployments in deploy/, found {files:?}"
    );
    files
}

/// The non-empty YAML documents of a file.
fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn all_docs() -> Vec<(PathBuf, Value)> {
    manifest_files()
        .into_iter()
        .flat_map(|f| {
            let docs = yaml_docs(&read(&f));
            docs.into_iter().map(move |d| (f.clone(), d))
        })
        .collect()
}

/// (Deployment name, pod spec) of every Deployment.
fn pods() -> Vec<(String, Value)> {
    let pods: Vec<_> = all_docs()
        .into_iter()
        .filter(|(_, d)| d["kind"] == "Deployment")
        .map(|(_, d)| {
            (
                d["metadata"]["name"].as_str().unwrap().to_string(),
                d["spec"]["template"]["spec"].clone(),
            )
        })
        .collect();
    let names: BTreeSet<_> = pods.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["bindings-nodeapp", "bindings-pythonapp"]),
        "the two quickstart apps"
    );
    pods
}

fn pod<'a>(pods: &'a [(String, Value)], name: &str) -> &'a Value {
    &pods.iter().find(|(n, _)| n == name).unwrap().1
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

/// The outrigger container of a pod: an init container (native sidecar).
fn sidecar(pod: &Value) -> &Value {
    seq(&pod["initContainers"])
        .iter()
        .find(|c| c["name"] == "outrigger")
        .expect("an init container named outrigger")
}

fn args(container: &Value) -> Vec<String> {
    seq(&container["args"])
        .iter()
        .map(|a| a.as_str().expect("args are strings").to_string())
        .collect()
}

/// The value of `--flag=value` or `--flag value`.
fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        if let Some(v) = a.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            Some(v.to_string())
        } else if a == name {
            args.get(i + 1).cloned()
        } else {
            None
        }
    })
}

fn flag_num(args: &[String], name: &str, default: u64) -> u64 {
    flag(args, name).map_or(default, |v| {
        v.parse().unwrap_or_else(|_| panic!("{name}={v}"))
    })
}

fn container_port(container: &Value, name: &str) -> Option<u64> {
    seq(&container["ports"])
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
}

fn env(container: &Value, name: &str) -> Option<String> {
    seq(&container["env"])
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| {
            e["value"]
                .as_str()
                .expect("env values are strings")
                .to_string()
        })
}

/// The kubernetes-validate entry point in the test venv.
fn validator() -> PathBuf {
    let p = repo_root().join(".tools/venv/bin/kubernetes-validate");
    assert!(
        p.exists(),
        "kubernetes-validate is missing: run scripts/test-deps.sh"
    );
    p
}

/// The newest Kubernetes version whose schemas the validator bundles.
fn newest_schema_version() -> String {
    let out = Command::new(python())
        .args([
            "-c",
            "import kubernetes_validate.utils as u; print(u.latest_version())",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn validate(versions: &[&str], files: &[PathBuf]) -> (Output, String) {
    let mut cmd = Command::new(validator());
    cmd.arg("--strict");
    for v in versions {
        cmd.args(["-k", v]);
    }
    let out = cmd.args(files).output().expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// The long flags `outrigger sidecar --help` lists.
fn sidecar_flags() -> BTreeSet<String> {
    let out = Command::new(outrigger_bin())
        .args(["sidecar", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    let flags: BTreeSet<String> = help
        .split_whitespace()
        .map(|t| t.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|t| t.starts_with("--") && t.len() > 2)
        .map(str::to_string)
        .collect();
    // The extraction found the flags (so a miss below means a wrong flag, not a bad parse).
    for known in ["--app-id", "--resources-path", "--dapr-listen-addresses"] {
        assert!(flags.contains(known), "{known} in\n{help}");
    }
    flags
}

/// The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined.
fn dockerfile(path: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in read(path).lines() {
        let line = line.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let (kw, rest) = pending.split_once(' ').unwrap_or((&pending, ""));
        out.push((kw.to_ascii_uppercase(), rest.trim().to_string()));
        pending.clear();
    }
    out
}

fn instructions<'a>(df: &'a [(String, String)], kw: &str) -> Vec<&'a str> {
    df.iter()
        .filter(|(k, _)| k == kw)
        .map(|(_, a)| a.as_str())
        .collect()
}

fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("exec form JSON array {text}: {e}"))
}

#[test]
fn manifests_pass_the_offline_schema_validator_for_kubernetes_1_29_and_newest() {
    let files = manifest_files();
    let docs = all_docs().len();
    let newest = newest_schema_version();
    let (out, text) = validate(&["1.29.0", &newest], &files);
    assert!(out.status.success(), "kubernetes-validate failed:\n{text}");
    // A kind the validator has no schema for is only a WARN with exit 0: count the passes.
    let passed = text
        .lines()
        .filter(|l| l.starts_with("INFO ") && l.contains(" passed for resource "))
        .count();
    assert_eq!(passed, docs * 2, "every document passed twice:\n{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("WARN") || l.starts_with("ERROR")),
        "{text}"
    );
}

#[test]
fn schema_validator_rejects_broken_manifests() {
    let original_path = deploy_dir().join("bindings-nodeapp.yaml");
    let original = read(&original_path);
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // An unknown field (strict mode).
        (
            "readOnlyRootFilesystem: true",
            "readOnlyRootFileSystem: true",
            "readOnlyRootFileSystem",
        ),
        // A wrong type.
        (
            "containerPort: 3500",
            "containerPort: three-thousand-five-hundred",
            "is not of type 'integer'",
        ),
    ];
    for (i, (from, to, expected)) in cases.iter().enumerate() {
        let broken = original.replacen(from, to, 1);
        assert_ne!(broken, original, "{from:?} is in the manifest");
        let file = dir.path().join(format!("broken-{i}.yaml"));
        std::fs::write(&file, broken).unwrap();
        let (out, text) = validate(&["1.29.0"], &[file]);
        assert!(!out.status.success(), "{to:?} was accepted:\n{text}");
        assert!(
            text.contains("ERROR") && text.contains(expected),
            "{to:?}: {text}"
        );
    }
    // Native sidecars (restartPolicy on an init container) are unknown before 1.28: the
    // validator really checks the field the manifests rely on.
    let (out, text) = validate(&["1.27.0"], &[original_path]);
    assert!(!out.status.success(), "accepted for 1.27:\n{text}");
    assert!(text.contains("'restartPolicy' was unexpected"), "{text}");
}

#[test]
fn every_sidecar_flag_in_the_manifests_and_dockerfile_is_one_outrigger_accepts() {
    let known = sidecar_flags();
    assert!(!known.contains("--no-such-flag"));
    let mut used = Vec::new();
    for (name, pod) in pods() {
        for a in args(sidecar(&pod)) {
            assert!(
                a.starts_with("--"),
                "{name}: argument {a:?} is not a --flag"
            );
            used.push((name.clone(), a.split('=').next().unwrap().to_string()));
        }
    }
    let df = dockerfile(&repo_root().join("Dockerfile"));
    let cmd = instructions(&df, "CMD");
    assert_eq!(cmd.len(), 1, "one CMD");
    for a in exec_form(cmd[0]).iter().filter(|a| a.starts_with("--")) {
        used.push(("Dockerfile CMD".into(), a.split('=').next().unwrap().into()));
    }
    assert!(used.len() >= 8, "{used:?}");
    for (whose, f) in &used {
        assert!(
            known.contains(f),
            "{whose}: {f} is not a flag of `outrigger sidecar`"
        );
    }
}

#[test]
fn manifests_agree_on_ports_paths_probes_grace_and_security() {
    let docs = all_docs();
    let configmaps: Vec<&Value> = docs
        .iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == "ConfigMap")
        .collect();
    let readme = read(&deploy_dir().join("README.md"));
    for (name, pod) in pods() {
        let side = sidecar(&pod);
        let a = args(side);
        let ctx = format!("deployment {name}");

        // A native sidecar (KEP-753): restartPolicy Always on an init container.
        assert_eq!(side["restartPolicy"], "Always", "{ctx}");
        assert_eq!(
            flag(&a, "--app-id").as_deref(),
            Some(name.as_str()),
            "{ctx}"
        );
        // The kubelet probes the pod IP, so loopback only would fail every probe.
        assert_eq!(
            flag(&a, "--dapr-listen-addresses").as_deref(),
            Some("0.0.0.0"),
            "{ctx}"
        );
        let image = side["image"].as_str().unwrap();
        assert!(
            readme.contains(&format!("-t {image} .")),
            "{ctx}: deploy/README.md shows how to build {image}"
        );

        // Ports: the sidecar's container ports are the ones it listens on.
        let http = flag_num(&a, "--dapr-http-port", DEFAULT_HTTP_PORT);
        let grpc = flag_num(&a, "--dapr-grpc-port", DEFAULT_GRPC_PORT);
        assert_eq!(container_port(side, "dapr-http"), Some(http), "{ctx}");
        assert_eq!(container_port(side, "dapr-grpc"), Some(grpc), "{ctx}");

        // Probes: the startup and liveness probes must not wait for the app (the kubelet
        // starts the app only after the sidecar's startup probe passed); readiness does.
        for (probe, path) in [
            ("startupProbe", "/v1.0/healthz/outbound"),
            ("livenessProbe", "/v1.0/healthz/outbound"),
            ("readinessProbe", "/v1.0/healthz"),
        ] {
            let get = &side[probe]["httpGet"];
            assert_eq!(get["path"], path, "{ctx}: {probe}");
            let port = &get["port"];
            assert!(
                *port == "dapr-http" || port.as_u64() == Some(http),
                "{ctx}: {probe} port {port:?}"
            );
        }

        // Components: --resources-path is a read-only mount of a ConfigMap in deploy/
        // whose entries are Dapr component files.
        let path = flag(&a, "--resources-path").expect("--resources-path");
        let mount = seq(&side["volumeMounts"])
            .iter()
            .find(|m| m["mountPath"] == path.as_str())
            .unwrap_or_else(|| panic!("{ctx}: a volume mounted at {path}"));
        assert_eq!(mount["readOnly"], true, "{ctx}");
        let volume = seq(&pod["volumes"])
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("the mounted volume");
        let cm_name = volume["configMap"]["name"]
            .as_str()
            .expect("a configMap volume");
        let cm = configmaps
            .iter()
            .find(|c| c["metadata"]["name"] == cm_name)
            .unwrap_or_else(|| panic!("{ctx}: ConfigMap {cm_name} is in deploy/"));
        let data = cm["data"].as_mapping().expect("ConfigMap data");
        assert!(!data.is_empty());
        for (key, text) in data {
            let key = key.as_str().unwrap();
            assert!(
                key.ends_with(".yaml"),
                "{key}: the sidecar reads .yaml files"
            );
            for component in yaml_docs(text.as_str().unwrap()) {
                assert_eq!(component["kind"], "Component", "{key}");
                assert_eq!(component["apiVersion"], "dapr.io/v1alpha1", "{key}");
            }
        }

        // Grace: the pod's grace period covers the sidecar's graceful shutdown.
        let grace = flag_num(
            &a,
            "--dapr-graceful-shutdown-seconds",
            DEFAULT_GRACE_SECONDS,
        );
        let pod_grace = pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("terminationGracePeriodSeconds");
        assert!(
            pod_grace >= grace + SHUTDOWN_OVERRUN_SECONDS,
            "{ctx}: terminationGracePeriodSeconds {pod_grace} < {grace} + {SHUTDOWN_OVERRUN_SECONDS}"
        );

        // The apps find the sidecar through DAPR_HTTP_PORT / DAPR_GRPC_PORT, and the
        // consumer listens where --app-port points.
        let apps = seq(&pod["containers"]);
        assert!(!apps.is_empty(), "{ctx}");
        for app in apps {
            assert_eq!(env(app, "DAPR_HTTP_PORT"), Some(http.to_string()), "{ctx}");
            assert_eq!(env(app, "DAPR_GRPC_PORT"), Some(grpc.to_string()), "{ctx}");
        }
        if let Some(app_port) = flag(&a, "--app-port") {
            let listening = apps.iter().any(|c| {
                seq(&c["ports"]).iter().any(|p| {
                    p["containerPort"].as_u64().map(|n| n.to_string()) == Some(app_port.clone())
                }) && env(c, "APP_PORT").as_deref() == Some(app_port.as_str())
            });
            assert!(listening, "{ctx}: an app container on port {app_port}");
        }

        // Security and resources, for every container of the pod.
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{ctx}");
        assert_eq!(
            pod["securityContext"]["runAsUser"].as_u64(),
            Some(NONROOT_UID),
            "{ctx}"
        );
        for c in seq(&pod["initContainers"]).iter().chain(apps) {
            let cname = format!("{ctx}, container {:?}", c["name"]);
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{cname}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{cname}");
            assert!(
                seq(&sc["capabilities"]["drop"]).iter().any(|d| d == "ALL"),
                "{cname}: drops ALL capabilities"
            );
            for kind in ["requests", "limits"] {
                for res in ["cpu", "memory"] {
                    assert!(
                        !c["resources"][kind][res].is_null(),
                        "{cname}: resources.{kind}.{res}"
                    );
                }
            }
            let image = c["image"].as_str().unwrap();
            assert!(
                readme.contains(&format!("-t {image} ")),
                "{cname}: deploy/README.md shows how to build {image}"
            );
        }
    }
}

#[test]
fn dockerfile_builds_the_sidecar_into_a_nonroot_image_that_has_its_libraries() {
    let root = repo_root();
    let df = dockerfile(&root.join("Dockerfile"));
    let from = instructions(&df, "FROM");
    assert_eq!(from.len(), 2, "a builder and a runtime stage: {from:?}");
    // Builder: the official Rust image on Debian 12, whose OpenSSL 3.0 the runtime has too.
    assert!(
        from[0].starts_with("rust:")
            && from[0].contains("-bookworm")
            && from[0].ends_with(" AS builder"),
        "{}",
        from[0]
    );
    assert_eq!(from[1], "gcr.io/distroless/cc-debian12:nonroot");
    let run = instructions(&df, "RUN").join("\n");
    assert!(run.contains("cargo build --release --locked"), "{run}");
    assert!(run.contains("--features rdkafka/libz-static"), "{run}");
    let copy = instructions(&df, "COPY");
    assert!(
        copy.contains(&"--from=builder /outrigger /outrigger"),
        "{copy:?}"
    );
    assert_eq!(
        exec_form(instructions(&df, "ENTRYPOINT")[0]),
        ["/outrigger", "sidecar"]
    );
    assert_eq!(
        exec_form(instructions(&df, "CMD")[0]),
        ["--dapr-listen-addresses", "0.0.0.0"]
    );
    assert_eq!(
        instructions(&df, "USER"),
        [format!("{NONROOT_UID}:{NONROOT_UID}")]
    );
    // The API ports are exposed, and every exposed port is one of the binary's defaults.
    let exposed: BTreeSet<u64> = instructions(&df, "EXPOSE")
        .iter()
        .flat_map(|e| e.split_whitespace())
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        exposed.is_superset(&BTreeSet::from([DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT])),
        "{exposed:?}"
    );
    let help = String::from_utf8(
        Command::new(outrigger_bin())
            .args(["sidecar", "--help"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for p in exposed {
        assert!(help.contains(&format!("[default: {p}]")), "{p}\n{help}");
    }

    let ignore: BTreeSet<String> = read(&root.join(".dockerignore"))
        .lines()
        .map(|l| l.trim().trim_start_matches("**/").to_string())
        .collect();
    for entry in ["target", ".tools", "node_modules"] {
        assert!(ignore.contains(entry), ".dockerignore lists {entry}");
    }

    // Every shared library the binary loads is in distroless/cc-debian12 (glibc, libgcc_s,
    // libssl3), except zlib, which the image links statically (rdkafka/libz-static above).
    let in_image = [
        "libc.so.6",
        "libm.so.6",
        "libdl.so.2",
        "libpthread.so.0",
        "librt.so.1",
        "libgcc_s.so.1",
        "libstdc++.so.6",
        "libssl.so.3",
        "libcrypto.so.3",
    ];
    let ldd = Command::new("ldd").arg(outrigger_bin()).output().unwrap();
    assert!(ldd.status.success(), "{ldd:?}");
    let ldd = String::from_utf8(ldd.stdout).unwrap();
    let needed: Vec<&str> = ldd
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|l| !l.starts_with('/') && !l.starts_with("linux-vdso"))
        .collect();
    assert!(needed.contains(&"libc.so.6"), "{ldd}");
    for lib in needed {
        assert!(
            in_image.contains(&lib) || lib == "libz.so.1",
            "{lib} is not in gcr.io/distroless/cc-debian12:\n{ldd}"
        );
    }

    // The app images: each build command names its context, whose files the Dockerfile
    // copies, and its tag is the image a manifest runs.
    let images: BTreeSet<String> = pods()
        .iter()
        .flat_map(|(_, p)| seq(&p["containers"]).to_vec())
        .map(|c| c["image"].as_str().unwrap().to_string())
        .collect();
    let mut built = BTreeSet::new();
    for entry in std::fs::read_dir(deploy_dir().join("apps")).unwrap() {
        let file = entry.unwrap().path();
        let text = read(&file);
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let build = text
            .lines()
            .find_map(|l| {
                l.trim_start_matches('#')
                    .trim()
                    .strip_prefix("docker build ")
            })
            .unwrap_or_else(|| panic!("{rel}: a `docker build` line"));
        let words: Vec<&str> = build.split_whitespace().collect();
        assert_eq!(words.len(), 5, "{rel}: -f FILE -t TAG CONTEXT");
        assert_eq!((words[0], words[1], words[2]), ("-f", rel.as_str(), "-t"));
        let context = root.join(words[4]);
        for (_, src) in dockerfile(&file).iter().filter(|(k, _)| k == "COPY") {
            let parts: Vec<&str> = src.split_whitespace().collect();
            for s in &parts[..parts.len() - 1] {
                assert!(
                    context.join(s).exists(),
                    "{rel}: COPY {s} from {}",
                    words[4]
                );
            }
        }
        built.insert(words[3].to_string());
    }
    assert_eq!(
        built, images,
        "every app image is built by a deploy/apps Dockerfile"
    );
}

/// The ConfigMap's component, pointed at the test broker, topic and group.
fn configmap_component(brokers: &str, topic: &str, group: &str) -> String {
    let docs = yaml_docs(&read(&deploy_dir().join("components.yaml")));
    let text = docs[0]["data"]["kafka_bindings.yaml"]
        .as_str()
        .expect("kafka_bindings.yaml in the ConfigMap");
    retarget_quickstart_component(text, "kafka:9092", brokers, topic, group)
}

/// A pod's sidecar arguments made to run here: loopback instead of 0.0.0.0, the test's
/// component folder instead of the mount, free ports; every other flag as written.
fn local_args(pod: &Value, components: &Path, app_port: Option<u16>) -> (Vec<String>, u16) {
    let http_port = free_port();
    let mut ports = vec![
        ("--dapr-http-port", http_port.to_string()),
        ("--dapr-grpc-port", free_port().to_string()),
    ];
    // Any other port the binary opens by default (metrics) must not collide either.
    if sidecar_flags().contains("--metrics-port") {
        ports.push(("--metrics-port", "0".to_string()));
    }
    let mut out: Vec<String> = args(sidecar(pod))
        .into_iter()
        .map(|a| {
            let name = a.split('=').next().unwrap().to_string();
            match name.as_str() {
                "--dapr-listen-addresses" => format!("{name}=127.0.0.1"),
                "--resources-path" => format!("{name}={}", components.display()),
                "--app-port" => format!("{name}={}", app_port.expect("an app port")),
                n if ports.iter().any(|(p, _)| *p == n) => {
                    panic!("rewrite this port flag for the test too: {a}")
                }
                _ => a,
            }
        })
        .collect();
    out.extend(ports.into_iter().map(|(f, v)| format!("{f}={v}")));
    (out, http_port)
}

async fn status(url: &str) -> Option<u16> {
    reqwest::get(url).await.ok().map(|r| r.status().as_u16())
}

/// Polls `url` until it answers `want`; panics (with `proc`'s output) if `proc` exits or
/// after `timeout`.
async fn wait_status(proc: &mut Proc, url: &str, want: u16, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(s) = proc.exited() {
            panic!("{} exited ({s})\n{}", proc.name, proc.transcript());
        }
        if status(url).await == Some(want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {want} from {url}\n{}",
            proc.transcript()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM, as the kubelet sends; the sidecar must exit 0 within the pod's grace period.
async fn stop_within_grace(proc: Proc, pod: &Value) {
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
    let (proc, status) = tokio::task::spawn_blocking(move || {
        let mut p = proc;
        let s = p.terminate(grace);
        (p, s)
    })
    .await
    .unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "the sidecar did not exit 0 within terminationGracePeriodSeconds ({status:?})\n{}",
        proc.transcript()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_sidecar_with_manifest_args_passes_startup_before_the_app_and_ready_after() {
    let pods = pods();
    let pod = pod(&pods, "bindings-nodeapp");
    let broker = Broker::start();
    let topic = unique("sample");
    broker.create_topic(&topic, 1);
    let components = components_dir(&[configmap_component(
        &broker.addr(),
        &topic,
        &unique("group1"),
    )]);
    let app_port = free_port();
    let (args, http_port) = local_args(pod, components.path(), Some(app_port));
    let mut cmd = Command::new(outrigger_bin());
    clear_dapr_env(&mut cmd).arg("sidecar").args(&args);
    let mut sidecar = Proc::spawn("outrigger (bindings-nodeapp pod)", cmd);
    let base = format!("http://127.0.0.1:{http_port}");

    // The startup probe's path passes with no app listening: the kubelet can start the app.
    wait_status(
        &mut sidecar,
        &format!("{base}/v1.0/healthz/outbound"),
        204,
        Duration::from_secs(30),
    )
    .await;
    // The readiness path would have blocked it: 500 while the app port is closed.
    assert_eq!(status(&format!("{base}/v1.0/healthz")).await, Some(500));
    let md: serde_json::Value = reqwest::get(format!("{base}/v1.0/metadata"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(md["id"], "bindings-nodeapp");
    assert!(
        md["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "sample-topic" && c["type"] == "bindings.kafka"),
        "the ConfigMap's component is loaded: {md}"
    );

    // The app container starts (the real quickstart consumer, with the manifest's env).
    let app = &seq(&pod["containers"])[0];
    assert_eq!(env(app, "APP_PORT").as_deref(), Some("3000"));
    let mut cmd = node(&repo_root().join("examples/bindings/nodeapp"), "app.js");
    clear_dapr_env(&mut cmd)
        .env("APP_PORT", app_port.to_string())
        .env("DAPR_HTTP_PORT", http_port.to_string());
    let mut nodeapp = Proc::spawn("node app.js", cmd);
    wait_status(
        &mut nodeapp,
        &format!("{base}/v1.0/healthz"),
        204,
        Duration::from_secs(60),
    )
    .await;

    // Pod deletion: the app stops first, then the sidecar.
    nodeapp.terminate(Duration::from_secs(10));
    stop_within_grace(sidecar, pod).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn producer_sidecar_with_manifest_args_is_ready_without_an_app_and_serves_the_producer() {
    let pods = pods();
    let pod = pod(&pods, "bindings-pythonapp");
    let broker = Broker::start();
    let topic = unique("sample");
    broker.create_topic(&topic, 1);
    let components = components_dir(&[configmap_component(
        &broker.addr(),
        &topic,
        &unique("group1"),
    )]);
    let (args, http_port) = local_args(pod, components.path(), None);
    let mut cmd = Command::new(outrigger_bin());
    clear_dapr_env(&mut cmd).arg("sidecar").args(&args);
    let mut sidecar = Proc::spawn("outrigger (bindings-pythonapp pod)", cmd);
    let base = format!("http://127.0.0.1:{http_port}");

    // No --app-port: both probe paths pass once the components are loaded.
    wait_status(
        &mut sidecar,
        &format!("{base}/v1.0/healthz/outbound"),
        204,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(status(&format!("{base}/v1.0/healthz")).await, Some(204));

    // The app container: the real quickstart producer, with the manifest's env (port rewritten).
    let app = &seq(&pod["containers"])[0];
    assert!(env(app, "DAPR_HTTP_PORT").is_some());
    let mut cmd = Command::new(python());
    clear_dapr_env(&mut cmd)
        .current_dir(repo_root().join("examples/bindings/pythonapp"))
        .arg("app.py")
        .env("DAPR_HTTP_PORT", http_port.to_string())
        .env("ORDER_INTERVAL", "0.05")
        .env("ORDER_COUNT", "3")
        .env("PYTHONUNBUFFERED", "1");
    let (producer, exit) =
        run_to_end(Proc::spawn("python app.py", cmd), Duration::from_secs(60)).await;
    assert!(exit.success(), "{}", producer.transcript());
    let ok = producer
        .stdout_lines()
        .iter()
        .filter(|l| *l == "<Response [204]>")
        .count();
    assert_eq!(ok, 3, "{}", producer.transcript());
    let records = read_topic(&broker.addr(), &topic, 3, Duration::from_secs(30));
    let values: Vec<String> = records.iter().map(|r| r.text()).collect();
    assert_eq!(
        values,
        ["{\"orderId\":1}", "{\"orderId\":2}", "{\"orderId\":3}"],
        "the orders reached Kafka in order"
    );

    stop_within_grace(sidecar, pod).await;
}
