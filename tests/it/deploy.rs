//! The container image and the install manifest (`Dockerfile`, `deploy/`), offline.
//!
//! `deploy/install.yaml` goes through an offline schema validator (`kubernetes-validate`,
//! which bundles the Kubernetes JSON schemas; strict mode, so unknown fields fail) for
//! Kubernetes 1.29, the first with native sidecars, and for the newest version it knows, and
//! broken copies prove it can fail. Every flag the manifest passes to the injector, and every
//! flag the injector writes into a pod, is one the binary accepts; the RBAC is no wider than
//! the sidecar and the injector need. `tests/it/k8s.rs` applies the same files to a real API
//! server.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use serde_yaml::Value;

use crate::support::*;

/// The uid of distroless's `nonroot` user, which the image and the pods run as.
const NONROOT_UID: u64 = 65532;
/// What the sidecar listens on when no port is given (the binary's defaults).
const DEFAULT_HTTP_PORT: u64 = 3500;
const DEFAULT_GRPC_PORT: u64 = 50001;

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The non-empty YAML documents of a file.
fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}
fn install_manifest() -> PathBuf {
    deploy_dir().join("install.yaml")
}

fn install_docs() -> Vec<Value> {
    yaml_docs(&read(&install_manifest()))
}

fn doc<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} in deploy/install.yaml"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .map(|x| x.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
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
fn deploy_install_manifest_passes_the_offline_schema_validator_for_kubernetes_1_29_and_newest() {
    let docs = install_docs().len();
    assert!(docs >= 10, "{docs} documents");
    let newest = newest_schema_version();
    let (out, text) = validate(&["1.29.0", &newest], &[install_manifest()]);
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
fn deploy_schema_validator_rejects_broken_manifests() {
    let original = read(&install_manifest());
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
            "containerPort: 4000",
            "containerPort: four-thousand",
            "is not of type 'integer'",
        ),
        // A field of the webhook misspelt.
        ("sideEffects: None", "sideEffect: None", "sideEffect"),
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
}

/// Parses `outrigger <args>` as the binary does.
fn parses(args: &[String]) -> Result<outrigger::cli::Cli, String> {
    let argv: Vec<std::ffi::OsString> = std::iter::once("outrigger".into())
        .chain(args.iter().map(Into::into))
        .collect();
    outrigger::launcher::args::try_parse_cli(argv).map_err(|e| e.to_string())
}

#[test]
fn deploy_every_flag_the_manifest_and_the_injector_pass_is_one_the_binary_accepts() {
    let docs = install_docs();
    let injector = &doc(&docs, "Deployment", "outrigger-injector")["spec"]["template"]["spec"]["containers"]
        [0];
    let command = strings(&injector["command"]);
    assert_eq!(command, ["/outrigger", "injector"]);
    let mut argv = vec![command[1].clone()];
    argv.extend(strings(&injector["args"]));
    let cli = parses(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let outrigger::cli::Command::Injector(args) = cli.command else {
        panic!("not the injector")
    };
    // The manifest's names agree with what the injector is told.
    assert_eq!(args.webhook_config, "outrigger-sidecar-injector");
    assert_eq!(args.service_name, "outrigger-injector");
    let service = doc(&docs, "Service", "outrigger-injector");
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"].as_u64(),
        Some(u64::from(args.port))
    );
    let webhook = &doc(
        &docs,
        "MutatingWebhookConfiguration",
        "outrigger-sidecar-injector",
    )["webhooks"][0];
    assert_eq!(
        webhook["clientConfig"]["service"]["name"],
        "outrigger-injector"
    );
    assert_eq!(webhook["clientConfig"]["service"]["path"], "/mutate");
    assert!(
        webhook["clientConfig"].get("caBundle").is_none(),
        "the injector publishes it"
    );
    assert!(!args.sidecar_image.is_empty());

    // What the injector writes into the tutorial's pods parses too, as a Kubernetes sidecar.
    let defaults = outrigger::kubernetes::patch::InjectorDefaults {
        image: args.sidecar_image.clone(),
        pull_policy: None,
    };
    for file in ["node.yaml", "python.yaml"] {
        let text = read(&repo_root().join("tests/fixtures/k8s").join(file));
        let deployment = yaml_docs(&text)
            .into_iter()
            .find(|d| d["kind"] == "Deployment")
            .unwrap();
        let template: serde_json::Value =
            serde_json::to_value(&deployment["spec"]["template"]).unwrap();
        let outrigger::kubernetes::patch::Outcome::Patch { ops, warnings } =
            outrigger::kubernetes::patch::mutate(&template, &defaults)
        else {
            panic!("{file}: not injected");
        };
        assert!(warnings.is_empty(), "{file}: {warnings:?}");
        let sidecar = &ops[0]["value"][0];
        let mut argv = vec!["sidecar".to_string()];
        argv.extend(
            sidecar["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string()),
        );
        let cli = parses(&argv).unwrap_or_else(|e| panic!("{file}: {argv:?}: {e}"));
        let outrigger::cli::Command::Sidecar(s) = cli.command else {
            panic!()
        };
        assert_eq!(
            s.kubernetes.mode,
            outrigger::kubernetes::Mode::Kubernetes,
            "{file}"
        );
        assert_eq!(
            s.dapr_listen_addresses, "localhost",
            "{file}: the API stays on loopback"
        );
        assert_eq!(s.kubernetes.dapr_public_port, Some(3501), "{file}");
        assert_eq!(sidecar["securityContext"]["runAsNonRoot"], true);
    }
}

#[test]
fn deploy_rbac_is_what_the_sidecar_and_the_injector_need_and_no_more() {
    let docs = install_docs();
    type Rule = (Vec<String>, Vec<String>, Vec<String>, Vec<String>);
    let rules = |name: &str| -> Vec<Rule> {
        doc(&docs, "ClusterRole", name)["rules"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    strings(&r["apiGroups"]),
                    strings(&r["resources"]),
                    strings(&r["verbs"]),
                    strings(&r["resourceNames"]),
                )
            })
            .collect()
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        rules("outrigger-sidecar"),
        [
            (
                s(&["dapr.io"]),
                s(&["components"]),
                s(&["get", "list", "watch"]),
                vec![]
            ),
            (s(&[""]), s(&["secrets"]), s(&["get"]), vec![]),
        ]
    );
    assert_eq!(
        rules("outrigger-injector"),
        [(
            s(&["admissionregistration.k8s.io"]),
            s(&["mutatingwebhookconfigurations"]),
            s(&["get", "patch"]),
            s(&["outrigger-sidecar-injector"])
        )]
    );
    // The sidecar's role is granted per namespace, never cluster-wide.
    for d in &docs {
        if d["kind"] == "ClusterRoleBinding" {
            assert_ne!(d["roleRef"]["name"], "outrigger-sidecar", "{d:?}");
        }
    }
    let binding = doc(&docs, "RoleBinding", "outrigger-sidecar");
    assert_eq!(binding["metadata"]["namespace"], "default");
    assert_eq!(
        binding["subjects"][0]["name"],
        "system:serviceaccounts:default"
    );
    // The CRD is Dapr's resource, so the tutorial's Component applies unchanged.
    let crd = doc(&docs, "CustomResourceDefinition", "components.dapr.io");
    assert_eq!(crd["spec"]["group"], "dapr.io");
    assert_eq!(crd["spec"]["names"]["kind"], "Component");
    assert_eq!(crd["spec"]["versions"][0]["name"], "v1alpha1");
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
    // The app images of deploy/apps: each build command names its context, whose files
    // the Dockerfile copies.
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
    }
}
