//! Component loading: every broken file in tests/fixtures/components/broken gets a clear
//! error naming its file, line, component, type and field, all reported at once (exit
//! code 64 from the binary); the files in tests/fixtures/components/good load, with their
//! typed metadata as written (several documents, .yml, unquoted scalars, scopes, envRef).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use outrigger::bindings::kafka::{Auth, DeadLetter, InitialOffset, KafkaMetadata, SaslMechanism};
use outrigger::bindings::{self, Planned, cron::CronMetadata};
use outrigger::config::{self, ConfigError};

use crate::support::*;

/// The app id the fixtures' `scopes` name.
const APP_ID: &str = "fixture-app";

fn fixtures(kind: &str) -> PathBuf {
    repo_root().join("tests/fixtures/components").join(kind)
}

/// Loads and plans as the sidecar does at start (runtime::load_components).
fn load_and_plan(paths: &[PathBuf], app_id: &str) -> (Vec<Planned>, Vec<ConfigError>) {
    let (components, mut errors) = config::load(paths, app_id);
    let (planned, plan_errors) = bindings::plan(components);
    errors.extend(plan_errors);
    (planned, errors)
}

/// One broken case: the file the error is reported in, and what the error must say.
struct Case {
    file: &'static str,
    /// Other files loaded with it (the first definition of a duplicate name).
    with: &'static [&'static str],
    line: Option<usize>,
    component: Option<&'static str>,
    component_type: Option<&'static str>,
    field: Option<&'static str>,
    /// Substrings of the message: why it is wrong, what to write instead.
    why: &'static [&'static str],
}

const KAFKA: Option<&str> = Some("bindings.kafka");
const CRON: Option<&str> = Some("bindings.cron");

const CASES: &[Case] = &[
    Case {
        file: "invalid-yaml.yaml",
        with: &[],
        line: Some(10),
        component: Some("bad-yaml"),
        component_type: KAFKA,
        field: None,
        why: &["invalid YAML", "mapping values are not allowed"],
    },
    Case {
        file: "missing-name.yaml",
        with: &[],
        line: Some(3),
        component: None,
        component_type: KAFKA,
        field: Some("metadata.name"),
        why: &["`metadata.name` is missing"],
    },
    Case {
        file: "missing-type.yaml",
        with: &[],
        line: Some(5),
        component: Some("no-type"),
        component_type: None,
        field: Some("spec.type"),
        why: &["`spec.type` is missing", "bindings.kafka"],
    },
    Case {
        file: "unsupported-type.yaml",
        with: &[],
        line: Some(6),
        component: Some("statestore"),
        component_type: Some("state.redis"),
        field: Some("spec.type"),
        why: &[
            "unsupported component type \"state.redis\"",
            "bindings.kafka, bindings.cron",
        ],
    },
    Case {
        file: "unsupported-version.yaml",
        with: &[],
        line: Some(7),
        component: Some("kafka-v2"),
        component_type: KAFKA,
        field: Some("spec.version"),
        why: &["unsupported version \"v2\"", "expected v1"],
    },
    Case {
        file: "kafka-no-brokers.yaml",
        with: &[],
        line: Some(1),
        component: Some("no-brokers"),
        component_type: KAFKA,
        field: Some("brokers"),
        why: &["required metadata is missing", "host:port"],
    },
    Case {
        file: "broker-not-host-port.yaml",
        with: &[],
        line: Some(9),
        component: Some("bad-broker"),
        component_type: KAFKA,
        field: Some("brokers"),
        why: &["\"kafka.internal\" is not host:port"],
    },
    Case {
        file: "secret-key-ref.yaml",
        with: &[],
        line: Some(15),
        component: Some("with-secret"),
        component_type: KAFKA,
        field: Some("saslPassword"),
        why: &["`secretKeyRef` is not supported", "envRef"],
    },
    Case {
        file: "env-ref-unset.yaml",
        with: &[],
        line: Some(9),
        component: Some("env-brokers"),
        component_type: KAFKA,
        field: Some("brokers"),
        why: &["\"OUTRIGGER_FIXTURE_NEVER_SET\"", "not set"],
    },
    Case {
        file: "bad-duration.yaml",
        with: &[],
        line: Some(11),
        component: Some("bad-session"),
        component_type: KAFKA,
        field: Some("sessionTimeout"),
        why: &["invalid duration \"ten\""],
    },
    Case {
        file: "heartbeat-not-shorter.yaml",
        with: &[],
        line: Some(13),
        component: Some("slow-heartbeat"),
        component_type: KAFKA,
        field: Some("heartbeatInterval"),
        why: &["heartbeatInterval (6s) must be shorter than sessionTimeout (6s)"],
    },
    Case {
        file: "bad-initial-offset.yaml",
        with: &[],
        line: Some(11),
        component: Some("bad-offset"),
        component_type: KAFKA,
        field: Some("initialOffset"),
        why: &["expected `newest` or `oldest`", "\"Beginning\""],
    },
    Case {
        file: "mtls-cert-without-key.yaml",
        with: &[],
        line: Some(13),
        component: Some("mtls-kafka"),
        component_type: KAFKA,
        field: Some("clientCert"),
        why: &[
            "clientKey is missing",
            "clientCert and clientKey are given together or not at all",
        ],
    },
    Case {
        file: "password-no-username.yaml",
        with: &[],
        line: Some(1),
        component: Some("no-username"),
        component_type: KAFKA,
        field: Some("saslUsername"),
        why: &["required metadata is missing", "authType password"],
    },
    Case {
        file: "bad-sasl-mechanism.yaml",
        with: &[],
        line: Some(17),
        component: Some("bad-mechanism"),
        component_type: KAFKA,
        field: Some("saslMechanism"),
        why: &["expected PLAIN, SHA-256 or SHA-512", "\"Md5\""],
    },
    Case {
        file: "bad-direction.yaml",
        with: &[],
        line: Some(13),
        component: Some("sideways"),
        component_type: KAFKA,
        field: Some("direction"),
        why: &[
            "expected `input`, `output` or `input, output`",
            "\"sideways\"",
        ],
    },
    Case {
        file: "topics-no-group.yaml",
        with: &[],
        line: Some(1),
        component: Some("no-group"),
        component_type: KAFKA,
        field: Some("consumerGroup"),
        why: &["`topics` is set", "consumer group is required"],
    },
    Case {
        file: "cron-no-schedule.yaml",
        with: &[],
        line: Some(1),
        component: Some("cron-unscheduled"),
        component_type: CRON,
        field: Some("schedule"),
        why: &["required metadata is missing", "@every"],
    },
    Case {
        file: "cron-bad-schedule.yaml",
        with: &[],
        line: Some(9),
        component: Some("cron-bad"),
        component_type: CRON,
        field: Some("schedule"),
        why: &["expected 5 or 6 fields", "\"every minute\""],
    },
    Case {
        file: "cron-output.yaml",
        with: &[],
        line: Some(11),
        component: Some("cron-out"),
        component_type: CRON,
        field: Some("direction"),
        why: &["bindings.cron is input only", "\"output\""],
    },
    Case {
        file: "duplicate-b.yaml",
        with: &["duplicate-a.yaml"],
        line: Some(2),
        component: Some("twin"),
        component_type: KAFKA,
        field: Some("metadata.name"),
        why: &["duplicate component name", "duplicate-a.yaml:1"],
    },
    Case {
        file: "metadata-not-list.yaml",
        with: &[],
        line: Some(8),
        component: Some("map-metadata"),
        component_type: KAFKA,
        field: Some("spec.metadata"),
        why: &["must be a list of {name, value} items"],
    },
    Case {
        file: "wrong-api-version.yaml",
        with: &[],
        line: Some(1),
        component: Some("old-api"),
        component_type: KAFKA,
        field: Some("apiVersion"),
        why: &["unsupported apiVersion \"dapr.io/v1\"", "dapr.io/v1alpha1"],
    },
    Case {
        file: "spec-not-mapping.yaml",
        with: &[],
        line: Some(5),
        component: Some("flat-spec"),
        component_type: None,
        field: Some("spec"),
        why: &["`spec` is missing or not a mapping"],
    },
    Case {
        file: "metadata-item-no-name.yaml",
        with: &[],
        line: Some(11),
        component: Some("nameless-item"),
        component_type: KAFKA,
        field: Some("spec.metadata[1]"),
        why: &["has no `name`"],
    },
    Case {
        file: "bad-ignore-errors.yaml",
        with: &[],
        line: Some(8),
        component: Some("maybe-ignore"),
        component_type: KAFKA,
        field: Some("spec.ignoreErrors"),
        why: &["expected true or false", "\"sometimes\""],
    },
    Case {
        file: "unknown-auth-type.yaml",
        with: &[],
        line: Some(11),
        component: Some("kerberos-kafka"),
        component_type: KAFKA,
        field: Some("authType"),
        why: &["unknown authType \"kerberos\""],
    },
    Case {
        file: "second-document-broken.yaml",
        with: &[],
        line: Some(24),
        component: Some("broken-second"),
        component_type: KAFKA,
        field: Some("maxMessageBytes"),
        why: &["expected a whole number", "\"lots\""],
    },
];

fn file_name(e: &ConfigError) -> &str {
    e.file.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

impl Case {
    /// Why `e` is not this case's error, or `None` when it is.
    fn mismatch(&self, e: &ConfigError) -> Option<String> {
        let text = e.to_string();
        let mut wrong = Vec::new();
        if file_name(e) != self.file {
            wrong.push(format!("file {:?} (want {})", e.file, self.file));
        }
        if e.line != self.line {
            wrong.push(format!("line {:?} (want {:?})", e.line, self.line));
        }
        if e.component.as_deref() != self.component {
            wrong.push(format!(
                "component {:?} (want {:?})",
                e.component, self.component
            ));
        }
        if e.component_type.as_deref() != self.component_type {
            wrong.push(format!(
                "type {:?} (want {:?})",
                e.component_type, self.component_type
            ));
        }
        if e.field.as_deref() != self.field {
            wrong.push(format!("field {:?} (want {:?})", e.field, self.field));
        }
        // The printed line must carry it all too: that is what the user reads.
        let mut printed = vec![self.file.to_string()];
        printed.extend(self.line.map(|l| format!("{}:{l}:", self.file)));
        printed.extend(self.component.map(|c| format!("component {c:?}")));
        printed.extend(self.component_type.map(str::to_string));
        printed.extend(self.field.map(|f| format!("field {f:?}")));
        printed.extend(self.why.iter().map(|w| w.to_string()));
        for p in printed {
            if !text.contains(&p) {
                wrong.push(format!("text lacks {p:?}"));
            }
        }
        (!wrong.is_empty()).then(|| format!("{text}\n      {}", wrong.join("; ")))
    }
}

fn render(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}\n"))
        .collect::<String>()
}

#[test]
fn corpus_has_one_case_per_broken_file() {
    let mut on_disk: BTreeSet<String> = std::fs::read_dir(fixtures("broken"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for case in CASES {
        for f in std::iter::once(&case.file).chain(case.with) {
            assert!(on_disk.remove(*f), "{f} is not in the broken folder");
        }
    }
    assert!(
        on_disk.is_empty(),
        "broken fixtures without a case: {on_disk:?}"
    );
    assert!(CASES.len() >= 14);
}

#[test]
fn each_broken_file_alone_gives_its_one_clear_error() {
    let mut failures = Vec::new();
    for case in CASES {
        let mut paths: Vec<PathBuf> = case
            .with
            .iter()
            .map(|f| fixtures("broken").join(f))
            .collect();
        paths.push(fixtures("broken").join(case.file));
        let (_, errors) = load_and_plan(&paths, APP_ID);
        match errors.as_slice() {
            [e] => failures.extend(case.mismatch(e).map(|m| format!("{}: {m}", case.file))),
            other => failures.push(format!(
                "{}: want exactly one error, got {}:\n{}",
                case.file,
                other.len(),
                render(other)
            )),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn all_broken_files_together_report_every_error_at_once() {
    let (_, errors) = load_and_plan(&[fixtures("broken")], APP_ID);
    assert_eq!(
        errors.len(),
        CASES.len(),
        "one error per case, all of them:\n{}",
        render(&errors)
    );
    let mut unmatched: Vec<&ConfigError> = errors.iter().collect();
    let mut missing = Vec::new();
    for case in CASES {
        match unmatched.iter().position(|e| case.mismatch(e).is_none()) {
            Some(i) => {
                unmatched.remove(i);
            }
            None => missing.push(case.file),
        }
    }
    assert!(
        missing.is_empty() && unmatched.is_empty(),
        "cases without their error: {missing:?}\nerrors of no case:\n{}",
        render(&unmatched.into_iter().cloned().collect::<Vec<_>>())
    );
}

/// A child process that is killed if the test ends early.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sidecar_command(resources: &Path, out: &Path, err: &Path) -> Command {
    let mut cmd = Command::new(outrigger_bin());
    cmd.args(["sidecar", "--app-id", APP_ID, "--resources-path"])
        .arg(resources)
        .args(["--dapr-http-port", "0", "--dapr-grpc-port", "0"])
        .args([
            "--dapr-listen-addresses",
            "127.0.0.1",
            "--log-level",
            "info",
        ])
        .env_remove("RUST_LOG")
        .env("CARGO_PKG_NAME", env!("CARGO_PKG_NAME"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::fs::File::create(err).unwrap());
    cmd
}

#[test]
fn binary_exits_64_naming_every_broken_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, err) = (tmp.path().join("out"), tmp.path().join("err"));
    let mut child = Proc(
        sidecar_command(&fixtures("broken"), &out, &err)
            .spawn()
            .unwrap(),
    );
    let status = wait_for("the sidecar to exit", Duration::from_secs(60), || {
        child.0.try_wait().unwrap()
    });
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert_eq!(status.code(), Some(64), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("{} problems in the component files", CASES.len())),
        "stderr:\n{stderr}"
    );
    for case in CASES {
        let found = stderr.lines().any(|l| {
            let mut want = vec![format!(
                "{}:{}",
                case.file,
                case.line.map(|l| format!("{l}:")).unwrap_or_default()
            )];
            want.extend(case.component.map(|c| format!("component {c:?}")));
            want.extend(case.field.map(|f| format!("field {f:?}")));
            want.extend(case.why.iter().map(|w| w.to_string()));
            want.iter().all(|w| l.contains(w.as_str()))
        });
        assert!(found, "no line for {} in stderr:\n{stderr}", case.file);
    }
    assert!(
        !port_reported(&std::fs::read_to_string(&out).unwrap_or_default()),
        "a sidecar with broken components must not serve"
    );
}

/// The HTTP port from the "API listening" log line, once it is written.
fn http_port_from_log(log: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains("API listening"))?;
    let addrs = line.split("http=[").nth(1)?.split(']').next()?;
    addrs
        .split(',')
        .next()?
        .trim()
        .rsplit(':')
        .next()?
        .parse()
        .ok()
}

fn port_reported(log: &str) -> bool {
    http_port_from_log(log).is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_starts_on_the_good_folder_with_its_components() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, err) = (tmp.path().join("out"), tmp.path().join("err"));
    let mut child = Proc(
        sidecar_command(&fixtures("good"), &out, &err)
            .spawn()
            .unwrap(),
    );
    let port = wait_until("the sidecar to listen", Duration::from_secs(60), || {
        let exited = child.0.try_wait().unwrap();
        let log = std::fs::read_to_string(&out).unwrap_or_default();
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        assert!(
            exited.is_none(),
            "the sidecar exited ({exited:?}):\n{stderr}\n{log}"
        );
        std::future::ready(http_port_from_log(&log))
    })
    .await;

    let metadata: serde_json::Value =
        reqwest::get(format!("http://127.0.0.1:{port}/v1.0/metadata"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(metadata["id"], APP_ID);
    let names: BTreeSet<&str> = metadata["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "env-ref",
            "orders-in",
            "orders-out",
            "payments",
            "scoped-in",
            "ticker"
        ]),
        "{metadata:#}"
    );

    // SIGTERM: a clean stop with exit code 0.
    let pid = child.0.id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait_for("the sidecar to stop", Duration::from_secs(30), || {
        child.0.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(0));
}

fn planned<'a>(planned: &'a [Planned], name: &str) -> &'a Planned {
    planned
        .iter()
        .find(|p| p.component.name == name)
        .unwrap_or_else(|| panic!("{name} not loaded"))
}

fn kafka<'a>(all: &'a [Planned], name: &str) -> &'a KafkaMetadata {
    let p = planned(all, name);
    p.metadata::<KafkaMetadata>()
        .unwrap_or_else(|| panic!("{name} is not kafka: {:?}", p.plan))
}

fn names(planned: &[Planned]) -> BTreeSet<&str> {
    planned.iter().map(|p| p.component.name.as_str()).collect()
}

#[test]
fn good_folder_loads_with_typed_metadata() {
    let (all, errors) = load_and_plan(&[fixtures("good")], APP_ID);
    assert!(errors.is_empty(), "\n{}", render(&errors));
    // Subscription, Configuration and the ignored state.redis are not components here;
    // scoped-out is for another app; notes.txt is not read.
    assert_eq!(
        names(&all),
        BTreeSet::from([
            "env-ref",
            "orders-in",
            "orders-out",
            "payments",
            "scoped-in",
            "ticker"
        ])
    );

    let out = kafka(&all, "orders-out");
    assert_eq!(out.brokers, "127.0.0.1:9,127.0.0.1:10");
    assert_eq!(out.publish_topic.as_deref(), Some("orders"));
    assert_eq!(out.max_message_bytes, Some(1_048_576), "unquoted number");
    assert!(out.escape_headers, "unquoted bool");
    assert!(out.is_output() && !out.is_input());
    let c = &planned(&all, "orders-out").component;
    assert_eq!(c.file.file_name().unwrap(), "kafka.yaml");
    assert_eq!(c.line, Some(3));
    assert_eq!(
        c.metadata.get_item("maxMessageBytes").unwrap().line,
        Some(16)
    );

    let input = kafka(&all, "orders-in");
    assert_eq!(
        input.brokers, "127.0.0.1:9",
        "BROKERS matched case-insensitively"
    );
    assert_eq!(input.topics, ["orders", "returns"]);
    assert_eq!(input.consumer_group.as_deref(), Some("order-processors"));
    assert_eq!(input.initial_offset, InitialOffset::Oldest);
    assert_eq!(input.heartbeat_interval, Duration::from_secs(2));
    assert_eq!(input.session_timeout, Duration::from_secs(30));
    assert_eq!(input.auth, Auth::None, "unquoted authRequired: false");
    assert_eq!(
        input.dead_letter,
        Some(DeadLetter {
            topic: "orders-dlq".into(),
            max_attempts: 5
        })
    );
    assert!(!input.direction.explicit);
    assert!(input.is_input() && input.is_output());
    assert_eq!(input.route, "orders-in");

    let payments = kafka(&all, "payments");
    assert!(payments.direction.explicit && payments.direction.input && payments.direction.output);
    assert!(planned(&all, "payments").plan.input_is_explicit());
    assert_eq!(payments.route, "pay");
    assert_eq!(payments.publish_topic.as_deref(), Some("payments-out"));
    match &payments.auth {
        Auth::Password {
            username,
            password,
            mechanism,
        } => {
            assert_eq!(username, "admin");
            assert_eq!(password.expose(), "s3cret");
            assert_eq!(*mechanism, SaslMechanism::ScramSha512);
        }
        other => panic!("payments auth: {other:?}"),
    }
    assert_eq!(payments.tls, None, "disableTls: true");
    assert_eq!(
        planned(&all, "payments").component.init_timeout,
        Duration::from_secs(20)
    );

    let ticker = planned(&all, "ticker");
    match ticker.metadata::<CronMetadata>() {
        Some(m) => {
            assert_eq!(m.schedule_text, "@every 15s");
            assert!(m.direction_explicit);
            assert_eq!(m.route, "ticker");
        }
        None => panic!("ticker: {:?}", ticker.plan),
    }
    assert_eq!(
        planned(&all, "ticker").component.file.file_name().unwrap(),
        "cron.yml"
    );

    assert_eq!(
        kafka(&all, "env-ref").client_id.as_deref(),
        Some(env!("CARGO_PKG_NAME")),
        "envRef read from the environment"
    );
}

#[test]
fn scopes_select_components_by_app_id() {
    let scoped = [fixtures("good").join("scoped.yaml")];
    let loaded = |app: &str| -> BTreeSet<String> {
        let (all, errors) = load_and_plan(&scoped, app);
        assert!(errors.is_empty(), "\n{}", render(&errors));
        all.into_iter().map(|p| p.component.name).collect()
    };
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(loaded(APP_ID), set(&["scoped-in"]));
    assert_eq!(loaded("another-app"), set(&["scoped-in"]));
    assert_eq!(loaded("someone-else"), set(&["scoped-out"]));
    assert_eq!(loaded("unrelated"), set(&[]));
    // Scopes match app ids exactly.
    assert_eq!(loaded("Fixture-App"), set(&[]));
}

#[test]
fn ignore_errors_skips_an_unsupported_type_silently() {
    let file = [fixtures("good").join("ignored.yaml")];
    let (components, errors) = config::load(&file, APP_ID);
    assert!(errors.is_empty(), "\n{}", render(&errors));
    assert_eq!(components.len(), 1, "the loader reads it");
    assert!(components[0].ignore_errors);
    let (planned, errors) = bindings::plan(components);
    assert!(errors.is_empty(), "\n{}", render(&errors));
    assert!(planned.is_empty(), "plan skips it");

    // The same file without ignoreErrors is an error, not a skip.
    let text = std::fs::read_to_string(&file[0])
        .unwrap()
        .replace("ignoreErrors: true", "ignoreErrors: false");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("strict.yaml"), text).unwrap();
    let (_, errors) = load_and_plan(&[dir.path().to_path_buf()], APP_ID);
    assert_eq!(errors.len(), 1, "\n{}", render(&errors));
    assert_eq!(errors[0].field.as_deref(), Some("spec.type"));
}

/// Typed metadata of a kafka component written inline with the given items.
fn kafka_from(items: &[(&str, &str)]) -> KafkaMetadata {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: k\nspec:\n  type: bindings.kafka\n  version: v1\n  metadata:\n".to_string();
    for (k, v) in items {
        doc.push_str(&format!("    - name: {k}\n      value: {v:?}\n"));
    }
    std::fs::write(dir.path().join("k.yaml"), doc).unwrap();
    let (all, errors) = load_and_plan(&[dir.path().to_path_buf()], APP_ID);
    assert!(errors.is_empty(), "\n{}", render(&errors));
    kafka(&all, "k").clone()
}

#[test]
fn kafka_defaults_for_an_input_binding() {
    let m = kafka_from(&[
        ("brokers", "127.0.0.1:9092"),
        ("topics", "a,b"),
        ("consumerGroup", "g"),
        ("authRequired", "false"),
    ]);
    assert_eq!(m.consume_retry_interval, Duration::from_millis(100));
    assert_eq!(m.heartbeat_interval, Duration::from_secs(3));
    assert_eq!(m.session_timeout, Duration::from_secs(10));
    assert_eq!(m.initial_offset, InitialOffset::Newest);
    assert_eq!(m.auth, Auth::None);
    assert_eq!(m.tls, None);
    assert!(!m.direction.explicit);
    assert!(m.is_input(), "topics and a group, no direction: input");
    assert!(m.is_output(), "no direction: output too");
    assert_eq!(m.route, "k", "the route defaults to the component name");
    assert_eq!(m.dead_letter, None);
    assert_eq!(m.publish_topic, None);
}

#[test]
fn kafka_defaults_for_an_output_binding() {
    let m = kafka_from(&[("brokers", "127.0.0.1:9092"), ("publishTopic", "t")]);
    assert!(m.is_output());
    assert!(!m.is_input(), "no topics: nothing to consume");
    assert_eq!(m.auth, Auth::None, "no authType, no authRequired: none");
    assert!(m.topics.is_empty());
}

#[test]
fn errors_name_the_exact_line_in_flow_style_and_after_a_byte_order_mark() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\u{feff}# a BOM, as some editors write\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: flow}\nspec:\n  type: bindings.kafka\n  metadata:\n  - {name: brokers, value: \"127.0.0.1:9092\"}\n  - {name: publishTopic, value: t}\n  - {name: initialOffset, value: sideways}\n  - name: sessionTimeout\n    value: forever\n";
    std::fs::write(dir.path().join("flow.yaml"), text).unwrap();
    let (_, errors) = load_and_plan(&[dir.path().to_path_buf()], APP_ID);
    let at: Vec<_> = errors
        .iter()
        .map(|e| (e.field.clone().unwrap_or_default(), e.line))
        .collect();
    assert_eq!(
        at,
        [
            ("initialOffset".to_string(), Some(10)),
            ("sessionTimeout".to_string(), Some(11)),
        ],
        "\n{}",
        render(&errors)
    );
    assert!(
        errors
            .iter()
            .all(|e| e.component.as_deref() == Some("flow"))
    );
}

#[test]
fn every_metadata_item_a_binding_does_not_read_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("components");
    std::fs::create_dir(&dir).unwrap();
    // An error (no schedule) so that the sidecar exits at once, after warning.
    let doc = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: tick\nspec:\n  type: bindings.cron\n  metadata:\n  - name: route\n    value: /tick\n  - {name: bogusField, value: x}\n  - name: ROUTE\n    value: /again\n---\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: k\nspec:\n  type: bindings.kafka\n  metadata:\n  - name: brokers\n    value: 127.0.0.1:9092\n  - name: consumerID\n    value: dapr-knows-it\n  - name: saslPassword\n    value: unused-without-authType\n";
    std::fs::write(dir.join("c.yaml"), doc).unwrap();
    let (out, err) = (tmp.path().join("out"), tmp.path().join("err"));
    let mut child = Proc(sidecar_command(&dir, &out, &err).spawn().unwrap());
    let status = wait_for("the sidecar to exit", Duration::from_secs(60), || {
        child.0.try_wait().unwrap()
    });
    let log = std::fs::read_to_string(&out).unwrap() + &std::fs::read_to_string(&err).unwrap();
    assert_eq!(status.code(), Some(64), "{log}");
    let warned = |field: &str, line: usize, why: &str| {
        log.lines().any(|l| {
            l.contains("metadata field ignored")
                && l.contains(&format!("field={field}"))
                && l.contains(&format!("line={line}"))
                && l.contains(why)
        })
    };
    assert!(warned("bogusField", 10, "does not read it"), "{log}");
    assert!(warned("ROUTE", 11, "repeats a name"), "{log}");
    assert!(
        warned("saslPassword", 25, "unused with these settings"),
        "{log}"
    );
    // Known to Dapr, no effect here: not a warning.
    assert!(!log.contains("field=consumerID"), "{log}");
    assert!(!log.contains("field=route "), "{log}");
}
