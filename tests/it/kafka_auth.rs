//! Kafka authentication and TLS as daprd's Kafka component offers them, against
//! the real broker's listeners (`scripts/kafka.sh`): SASL PLAIN and SCRAM over
//! plaintext and TLS, TLS trusting a CA (`certificate`), mutual TLS (`mtls`),
//! `skipVerify`; and what a user sees when the login or the certificate is wrong.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// A Kafka component whose values may span lines (PEM text): each value is a
/// YAML double-quoted scalar (JSON string syntax is valid YAML).
fn component(name: &str, meta: &[(&str, String)]) -> String {
    let items: String = meta
        .iter()
        .map(|(k, v)| {
            format!(
                "  - name: {k}\n    value: {}\n",
                serde_json::to_string(v).unwrap()
            )
        })
        .collect();
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: bindings.kafka\n  version: v1\n  metadata:\n{items}"
    )
}

fn output_meta(broker: &Broker, listener: &str, topic: &str) -> Vec<(&'static str, String)> {
    vec![
        ("brokers", broker.env(listener)),
        ("publishTopic", topic.to_string()),
        ("produceTimeout", "10s".to_string()),
    ]
}

fn sasl(broker: &Broker, mechanism: &str) -> Vec<(&'static str, String)> {
    let (user, password) = if mechanism == "PLAIN" {
        (
            broker.env("KAFKA_PLAIN_USER"),
            broker.env("KAFKA_PLAIN_PASSWORD"),
        )
    } else {
        (
            broker.env("KAFKA_SCRAM_USER"),
            broker.env("KAFKA_SCRAM_PASSWORD"),
        )
    };
    vec![
        ("authType", "password".to_string()),
        ("saslUsername", user),
        ("saslPassword", password),
        ("saslMechanism", mechanism.to_string()),
    ]
}

async fn post(http: &str, data: &str) -> (u16, Value) {
    let body =
        serde_json::json!({"data": data, "operation": "create", "metadata": {"partitionKey": "k"}});
    let resp = tokio::time::timeout(
        Duration::from_secs(60),
        reqwest::Client::new()
            .post(format!("{http}/v1.0/bindings/secure"))
            .json(&body)
            .send(),
    )
    .await
    .expect("an answer within 60 s")
    .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// One write through a sidecar configured with `meta`, read back on the
/// plaintext listener by an independent client.
async fn writes_through(meta: Vec<(&'static str, String)>, topic: &str) {
    let broker = Broker::shared();
    let sidecar = start_sidecar(&[component("secure", &meta)], |_| {}).await;
    let data = unique("payload");
    let (status, body) = post(&sidecar.http(), &data).await;
    assert_eq!(status, 204, "{body}");
    let brokers = broker.addr();
    let topic = topic.to_string();
    let records = tokio::task::spawn_blocking(move || {
        read_topic(&brokers, &topic, 1, Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert_eq!(records[0].text(), format!("\"{data}\""));
    assert_eq!(records[0].key_text().as_deref(), Some("k"));
    sidecar.stop().await;
}

async fn sasl_case(listener: &str, mechanism: &str, tls: bool) {
    let broker = Broker::shared();
    let topic = unique("sasl");
    broker.create_topic(&topic, 1);
    let mut meta = output_meta(&broker, listener, &topic);
    meta.extend(sasl(&broker, mechanism));
    if tls {
        meta.push(("caCert", broker.pem("KAFKA_CA_CERT")));
    } else {
        meta.push(("disableTls", "true".to_string()));
    }
    writes_through(meta, &topic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_plain_over_plaintext() {
    sasl_case("KAFKA_SASL_PLAINTEXT", "PLAIN", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_scram_sha_256_over_plaintext() {
    sasl_case("KAFKA_SASL_PLAINTEXT", "SHA-256", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_scram_sha_512_over_plaintext() {
    sasl_case("KAFKA_SASL_PLAINTEXT", "SHA-512", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_plain_over_tls() {
    sasl_case("KAFKA_SASL_SSL", "PLAIN", true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_scram_sha_256_over_tls() {
    sasl_case("KAFKA_SASL_SSL", "SHA-256", true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_scram_sha_512_over_tls() {
    sasl_case("KAFKA_SASL_SSL", "SHA-512", true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_over_tls_with_skip_verify_needs_no_ca() {
    let broker = Broker::shared();
    let topic = unique("skip");
    broker.create_topic(&topic, 1);
    let mut meta = output_meta(&broker, "KAFKA_SASL_SSL", &topic);
    meta.extend(sasl(&broker, "SHA-512"));
    meta.push(("skipVerify", "true".to_string()));
    writes_through(meta, &topic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_auth_is_tls_trusting_the_ca() {
    let broker = Broker::shared();
    let topic = unique("cert");
    broker.create_topic(&topic, 1);
    let mut meta = output_meta(&broker, "KAFKA_SSL", &topic);
    meta.push(("authType", "certificate".to_string()));
    meta.push(("caCert", broker.pem("KAFKA_CA_CERT")));
    writes_through(meta, &topic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_with_a_client_certificate_on_a_listener_that_requires_one() {
    let broker = Broker::shared();
    let topic = unique("mtls");
    broker.create_topic(&topic, 1);
    let mut meta = output_meta(&broker, "KAFKA_MTLS", &topic);
    meta.push(("authType", "mtls".to_string()));
    meta.push(("caCert", broker.pem("KAFKA_CA_CERT")));
    meta.push(("clientCert", broker.pem("KAFKA_CLIENT_CERT")));
    meta.push(("clientKey", broker.pem("KAFKA_CLIENT_KEY")));
    writes_through(meta, &topic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_without_a_client_certificate_is_plain_tls() {
    let broker = Broker::shared();
    let topic = unique("mtls-none");
    broker.create_topic(&topic, 1);
    let mut meta = output_meta(&broker, "KAFKA_SSL", &topic);
    meta.push(("authType", "mtls".to_string()));
    meta.push(("skipVerify", "true".to_string()));
    writes_through(meta, &topic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn input_binding_consumes_over_scram_and_tls() {
    let broker = Broker::shared();
    let topic = unique("sasl-in");
    broker.create_topic(&topic, 1);
    produce(&broker.addr(), &topic, numbered(3, 1)).await;
    let app = HttpApp::start().await;
    let mut meta = vec![
        ("brokers", broker.env("KAFKA_SASL_SSL")),
        ("topics", topic.clone()),
        ("consumerGroup", unique("group")),
        ("initialOffset", "oldest".to_string()),
        ("caCert", broker.pem("KAFKA_CA_CERT")),
    ];
    meta.extend(sasl(&broker, "SHA-256"));
    let sidecar = start_sidecar(&[component("secure", &meta)], |c| {
        c.app_port = Some(app.port);
    })
    .await;
    wait_until(
        "3 deliveries over SASL_SSL",
        Duration::from_secs(60),
        || {
            let n = app.accepted_count();
            async move { (n >= 3).then_some(()) }
        },
    )
    .await;
    let mut texts: Vec<String> = app.accepted().iter().map(|c| c.text()).collect();
    texts.sort();
    assert_eq!(texts, ["m0", "m1", "m2"]);
    sidecar.stop().await;
}

/// What a failing connection shows: the call's error and `/v1.0/metadata`.
async fn refused(meta: Vec<(&'static str, String)>, cause: &str) {
    let sidecar = start_sidecar(&[component("secure", &meta)], |_| {}).await;
    let http = sidecar.http();
    let (status, body) = post(&http, "refused").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["errorCode"], "ERR_INVOKE_OUTPUT_BINDING", "{body}");
    let message = body["message"].as_str().unwrap().to_string();
    wait_until(
        "metadata to name the cause",
        Duration::from_secs(30),
        || {
            let http = http.clone();
            async move {
                let md: Value = reqwest::get(format!("{http}/v1.0/metadata"))
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let v = md["extended"]["outputBinding.secure"].as_str()?.to_string();
                v.contains(cause).then_some(())
            }
        },
    )
    .await;
    // Once the cause is known, calls say it at once.
    let (status, body) = post(&http, "refused again").await;
    assert_eq!(status, 500, "{body}");
    let again = body["message"].as_str().unwrap();
    assert!(
        again.contains(cause) || message.contains(cause),
        "{cause:?} named in the call's error: {message} / {again}"
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_named_as_such() {
    let broker = Broker::shared();
    let topic = unique("wrongpw");
    let mut meta = output_meta(&broker, "KAFKA_SASL_PLAINTEXT", &topic);
    meta.extend(sasl(&broker, "SHA-256"));
    meta.retain(|(k, _)| *k != "saslPassword");
    meta.push(("saslPassword", "not-the-password".to_string()));
    meta.push(("disableTls", "true".to_string()));
    refused(meta, "authentication failed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_broker_certificate_is_named_as_such() {
    let broker = Broker::shared();
    let topic = unique("untrusted");
    let mut meta = output_meta(&broker, "KAFKA_SSL", &topic);
    meta.push(("authType", "certificate".to_string()));
    meta.push(("caCert", broker.pem("KAFKA_UNTRUSTED_CA_CERT")));
    refused(meta, "TLS failed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_the_broker_does_not_trust_is_refused() {
    let broker = Broker::shared();
    let topic = unique("badclient");
    let mut meta = output_meta(&broker, "KAFKA_MTLS", &topic);
    meta.push(("authType", "mtls".to_string()));
    meta.push(("caCert", broker.pem("KAFKA_CA_CERT")));
    meta.push(("clientCert", broker.pem("KAFKA_UNTRUSTED_CLIENT_CERT")));
    meta.push(("clientKey", broker.pem("KAFKA_UNTRUSTED_CLIENT_KEY")));
    refused(meta, "TLS failed").await;
}

/// Exit code and output of `outrigger sidecar` over one component file.
fn sidecar_exit(doc: &str) -> (Option<i32>, String) {
    let dir = components_dir(&[doc.to_string()]);
    // `timeout`: a sidecar that wrongly accepted the file would never exit.
    let out = Command::new("timeout")
        .arg("60")
        .arg(outrigger_bin())
        .arg("sidecar")
        .args(["--app-id", "auth"])
        // Port 0: a sidecar that wrongly accepted the file would still bind.
        .args(["--dapr-http-port", "0", "--dapr-grpc-port", "0"])
        .arg("--enable-metrics=false")
        .arg("--resources-path")
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn contradictory_or_unreadable_tls_settings_stop_the_sidecar_at_start() {
    let broker = Broker::shared();
    let ca = broker.pem("KAFKA_CA_CERT");
    let cert = broker.pem("KAFKA_CLIENT_CERT");
    let key = broker.pem("KAFKA_CLIENT_KEY");
    let base = |extra: &[(&'static str, String)]| {
        let mut m = vec![
            ("brokers", broker.env("KAFKA_SSL")),
            ("publishTopic", "t".to_string()),
        ];
        m.extend_from_slice(extra);
        component("secure", &m)
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (
            base(&[("authType", "mtls".into()), ("clientCert", cert.clone())]),
            "clientKey",
            "together",
        ),
        (
            base(&[("authType", "mtls".into()), ("disableTls", "true".into())]),
            "disableTls",
            "mtls",
        ),
        (
            base(&[("authType", "certificate".into())]),
            "caCert",
            "required",
        ),
        (
            base(&[
                ("authType", "certificate".into()),
                ("caCert", "/etc/ssl/ca.pem".into()),
            ]),
            "caCert",
            "PEM",
        ),
        (
            base(&[
                ("authType", "mtls".into()),
                ("caCert", ca.clone()),
                ("clientCert", key.clone()),
                ("clientKey", key.clone()),
            ]),
            "clientCert",
            "PEM",
        ),
    ];
    for (doc, field, words) in cases {
        let (code, out) = sidecar_exit(&doc);
        assert_eq!(code, Some(64), "{field}: {out}");
        assert!(
            out.contains(field) && out.contains(words),
            "{field} / {words}: {out}"
        );
        // A key is never echoed, not even when it sits in the wrong field.
        assert!(
            !out.contains("PRIVATE KEY"),
            "key material in the output: {out}"
        );
    }
}

#[test]
fn client_certificates_outside_mtls_are_reported_not_silently_dropped() {
    let broker = Broker::shared();
    let doc = component(
        "secure",
        &[
            ("brokers", broker.env("KAFKA_SASL_SSL")),
            ("publishTopic", "t".to_string()),
            ("authType", "password".to_string()),
            ("saslUsername", "u".to_string()),
            ("saslPassword", "p".to_string()),
            ("clientCert", broker.pem("KAFKA_CLIENT_CERT")),
            ("clientKey", broker.pem("KAFKA_CLIENT_KEY")),
        ],
    );
    let dir = components_dir(&[doc]);
    // The warning is written while the components load, before the sidecar listens.
    let sidecar = SidecarProc::builder(dir.path()).app_id("auth").start();
    let seen = sidecar.log_text();
    assert!(
        seen.contains("clientCert") && seen.contains("mtls"),
        "{seen}"
    );
    assert!(!seen.contains("PRIVATE KEY"), "{seen}");
}
