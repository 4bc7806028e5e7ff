//! What the injector does to one Pod: read its `dapr.io/*` annotations, check every value,
//! and build the JSON patch that adds outrigger as a native sidecar (an init container with
//! `restartPolicy: Always`) and gives the app containers `DAPR_HTTP_PORT` / `DAPR_GRPC_PORT`.
//! Pure functions over JSON, so they are tested without an API server.

use serde_json::{Value, json};

/// The sidecar container's name, as Dapr names it (`kubectl logs POD -c daprd` keeps working).
pub const SIDECAR_NAME: &str = "daprd";
pub const HTTP_PORT: u16 = 3500;
pub const GRPC_PORT: u16 = 50001;
/// The only port reachable from outside the pod: `/v1.0/healthz*` for the kubelet's probes.
pub const PUBLIC_PORT: u16 = 3501;

/// Set by the injector's flags, not by the pod.
#[derive(Debug, Clone)]
pub struct InjectorDefaults {
    pub image: String,
    pub pull_policy: Option<String>,
}

#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Admit the pod unchanged (not annotated, or already injected).
    Unchanged(&'static str),
    /// Admit with this JSON patch; the warnings go back to the user (`kubectl` prints them).
    Patch {
        ops: Vec<Value>,
        warnings: Vec<String>,
    },
    /// Refuse the pod: every bad annotation, one message each.
    Deny(Vec<String>),
}

/// Annotations outrigger reads; any other `dapr.io/*` one gets a warning.
const KNOWN: &[&str] = &[
    "enabled",
    "app-id",
    "app-port",
    "app-protocol",
    "app-channel-address",
    "log-level",
    "log-as-json",
    "app-max-concurrency",
    "enable-metrics",
    "metrics-port",
    "max-body-size",
    "http-max-request-size",
    "graceful-shutdown-seconds",
    "api-token-secret",
    "app-token-secret",
    "env",
    "sidecar-image",
    "sidecar-cpu-request",
    "sidecar-cpu-limit",
    "sidecar-memory-request",
    "sidecar-memory-limit",
    "sidecar-listen-addresses",
    "sidecar-liveness-probe-delay-seconds",
    "sidecar-liveness-probe-timeout-seconds",
    "sidecar-liveness-probe-period-seconds",
    "sidecar-liveness-probe-threshold",
    "sidecar-readiness-probe-delay-seconds",
    "sidecar-readiness-probe-timeout-seconds",
    "sidecar-readiness-probe-period-seconds",
    "sidecar-readiness-probe-threshold",
];

/// Dapr's reading of a yes/no annotation.
fn truthy(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" | "true" | "t" | "on" | "1" => Some(true),
        "n" | "no" | "false" | "f" | "off" | "0" => Some(false),
        _ => None,
    }
}

struct Annotations<'a> {
    map: &'a serde_json::Map<String, Value>,
    errors: Vec<String>,
}

impl<'a> Annotations<'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        self.map
            .get(&format!("dapr.io/{key}"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    fn bad(&mut self, key: &str, value: &str, want: &str) {
        self.errors.push(format!(
            "annotation dapr.io/{key}: {value:?} is not valid: expected {want}"
        ));
    }

    fn bool(&mut self, key: &str) -> Option<bool> {
        let v = self.get(key)?;
        let parsed = truthy(v);
        if parsed.is_none() {
            self.bad(key, v, "true or false");
        }
        parsed
    }

    fn int(&mut self, key: &str, min: i64, max: i64) -> Option<i64> {
        let v = self.get(key)?;
        match v.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.bad(key, v, &format!("a whole number from {min} to {max}"));
                None
            }
        }
    }

    fn port(&mut self, key: &str) -> Option<u16> {
        self.int(key, 1, 65535).map(|n| n as u16)
    }

    fn quantity(&mut self, key: &str) -> Option<&'a str> {
        let v = self.get(key)?;
        if is_quantity(v) {
            Some(v)
        } else {
            self.bad(
                key,
                v,
                "a Kubernetes quantity such as 100m, 0.5, 64Mi or 1G",
            );
            None
        }
    }

    fn secret_name(&mut self, key: &str) -> Option<&'a str> {
        let v = self.get(key)?;
        if is_dns_subdomain(v) {
            Some(v)
        } else {
            self.bad(key, v, "the name of a Secret of the pod's namespace");
            None
        }
    }
}

/// A Kubernetes resource quantity: a decimal number with an optional binary (Ki..Ei),
/// decimal (n, u, m, k, M..E) or exponent suffix.
pub fn is_quantity(v: &str) -> bool {
    let v = v.strip_prefix(['+', '-']).unwrap_or(v);
    let digits_end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, suffix) = v.split_at(digits_end);
    let number_ok = !num.is_empty()
        && num != "."
        && num.matches('.').count() <= 1
        && num.chars().any(|c| c.is_ascii_digit());
    let suffix_ok = matches!(
        suffix,
        "" | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
            | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
    ) || suffix
        .strip_prefix(['e', 'E'])
        .map(|e| {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
        })
        .unwrap_or(false);
    number_ok && suffix_ok
}

/// Bytes of a quantity without a fraction (`max-body-size: 16Mi`), for the MB flag.
fn quantity_bytes(v: &str) -> Option<u64> {
    let digits_end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, suffix) = v.split_at(digits_end);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn is_dns_subdomain(v: &str) -> bool {
    v.len() <= 253
        && v.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_env_name(v: &str) -> bool {
    !v.is_empty()
        && !v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

fn has_container(pod: &Value, list: &str, name: &str) -> bool {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.get("name").and_then(Value::as_str) == Some(name))
        })
}

/// Decides what to do with a pod being created.
pub fn mutate(pod: &Value, defaults: &InjectorDefaults) -> Outcome {
    let empty = serde_json::Map::new();
    let map = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut a = Annotations {
        map,
        errors: Vec::new(),
    };
    match a.get("enabled").map(truthy) {
        Some(Some(true)) => {}
        Some(None) => {
            let v = a.get("enabled").unwrap_or_default();
            return Outcome::Deny(vec![format!(
                "annotation dapr.io/enabled: {v:?} is not valid: expected true or false"
            )]);
        }
        _ => return Outcome::Unchanged("not annotated dapr.io/enabled: \"true\""),
    }
    if has_container(pod, "containers", SIDECAR_NAME)
        || has_container(pod, "initContainers", SIDECAR_NAME)
    {
        return Outcome::Unchanged("already has a daprd container");
    }

    let mut warnings: Vec<String> = map
        .keys()
        .filter_map(|k| k.strip_prefix("dapr.io/"))
        .filter(|k| !KNOWN.contains(k))
        .map(|k| format!("annotation dapr.io/{k} is not used by outrigger and is ignored"))
        .collect();

    // Dapr's default app id is the pod's name; pods of a Deployment only have a prefix yet.
    let app_id = a
        .get("app-id")
        .map(str::to_string)
        .or_else(|| {
            pod.pointer("/metadata/name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
        })
        .or_else(|| {
            pod.pointer("/metadata/generateName")
                .and_then(Value::as_str)
                .map(|n| n.trim_end_matches('-').to_string())
                .filter(|n| !n.is_empty())
        });
    let app_id = match app_id {
        Some(id)
            if id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) =>
        {
            id
        }
        Some(id) => {
            a.bad("app-id", &id, "letters, digits, '-' and '_'");
            String::new()
        }
        None => {
            a.errors
                .push("annotation dapr.io/app-id is missing and the pod has no name".into());
            String::new()
        }
    };

    let mut args: Vec<String> = vec![
        "--mode".into(),
        "kubernetes".into(),
        "--app-id".into(),
        app_id.clone(),
        "--dapr-http-port".into(),
        HTTP_PORT.to_string(),
        "--dapr-grpc-port".into(),
        GRPC_PORT.to_string(),
        "--dapr-public-port".into(),
        PUBLIC_PORT.to_string(),
    ];
    let mut flag = |name: &str, value: String| {
        args.push(format!("--{name}"));
        args.push(value);
    };
    // The APIs stay on loopback: only the app's containers, in the same pod, reach them.
    let listen = a.get("sidecar-listen-addresses").unwrap_or("localhost");
    if listen
        .split(',')
        .map(|h| h.trim().trim_matches(|c| c == '[' || c == ']'))
        .any(|h| h != "localhost" && h.parse::<std::net::IpAddr>().is_err())
    {
        a.bad(
            "sidecar-listen-addresses",
            listen,
            "comma-separated IP addresses",
        );
    }
    flag("dapr-listen-addresses", listen.to_string());
    if let Some(p) = a.port("app-port") {
        flag("app-port", p.to_string());
    }
    if let Some(p) = a.get("app-protocol") {
        match p {
            "http" | "grpc" => flag("app-protocol", p.to_string()),
            other => a.bad(
                "app-protocol",
                other,
                "http or grpc (outrigger has no TLS to the app)",
            ),
        }
    }
    if let Some(addr) = a.get("app-channel-address") {
        flag("app-channel-address", addr.to_string());
    }
    if let Some(l) = a.get("log-level") {
        match l {
            "debug" | "info" | "warn" | "warning" | "error" | "fatal" => {
                flag("log-level", l.to_string())
            }
            other => a.bad("log-level", other, "debug, info, warn, error or fatal"),
        }
    }
    if a.bool("log-as-json") == Some(true) {
        args_push_switch(&mut args, "--log-as-json");
    }
    let mut flag = |name: &str, value: String| {
        args.push(format!("--{name}"));
        args.push(value);
    };
    if let Some(n) = a.int("app-max-concurrency", -1, i64::from(u32::MAX)) {
        flag("app-max-concurrency", n.to_string());
    }
    let metrics = a.bool("enable-metrics").unwrap_or(true);
    flag("enable-metrics", metrics.to_string());
    let metrics_port = a.port("metrics-port").unwrap_or(9090);
    flag("metrics-port", metrics_port.to_string());
    // max-body-size is a quantity ("16Mi"); http-max-request-size the older MB number.
    let body_mb = if let Some(v) = a.get("max-body-size") {
        match quantity_bytes(v) {
            Some(b) if b > 0 => Some(b.div_ceil(1 << 20)),
            _ => {
                a.bad("max-body-size", v, "a whole size such as 4Mi or 16M");
                None
            }
        }
    } else {
        a.int("http-max-request-size", 1, 1 << 16).map(|n| n as u64)
    };
    if let Some(mb) = body_mb {
        flag("dapr-http-max-request-size", mb.to_string());
    }
    // Dapr's -1 means "the default".
    if let Some(s) = a.int("graceful-shutdown-seconds", -1, 3600)
        && s >= 0
    {
        flag("dapr-graceful-shutdown-seconds", s.to_string());
    }

    let mut sidecar_env = vec![
        json!({"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}),
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
    ];
    let mut app_env = vec![
        json!({"name": "DAPR_HTTP_PORT", "value": HTTP_PORT.to_string()}),
        json!({"name": "DAPR_GRPC_PORT", "value": GRPC_PORT.to_string()}),
    ];
    // Dapr keeps tokens in the key `token` of the named Secret; both containers get them.
    for (key, var) in [
        ("api-token-secret", "DAPR_API_TOKEN"),
        ("app-token-secret", "APP_API_TOKEN"),
    ] {
        if let Some(secret) = a.secret_name(key) {
            let v = json!({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}});
            sidecar_env.push(v.clone());
            app_env.push(v);
        }
    }
    if let Some(env) = a.get("env") {
        for item in env.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.split_once('=') {
                Some((k, v)) if is_env_name(k.trim()) => {
                    sidecar_env.push(json!({"name": k.trim(), "value": v.trim()}))
                }
                _ => a.bad("env", item, "KEY=VALUE pairs separated by commas"),
            }
        }
    }

    let image = match a.get("sidecar-image") {
        Some(i) if !i.contains(char::is_whitespace) => i.to_string(),
        Some(i) => {
            a.bad("sidecar-image", i, "an image reference");
            String::new()
        }
        None => defaults.image.clone(),
    };

    let mut requests = serde_json::Map::new();
    let mut limits = serde_json::Map::new();
    for (key, is_limit, res) in [
        ("sidecar-cpu-request", false, "cpu"),
        ("sidecar-memory-request", false, "memory"),
        ("sidecar-cpu-limit", true, "cpu"),
        ("sidecar-memory-limit", true, "memory"),
    ] {
        if let Some(q) = a.quantity(key) {
            let map = if is_limit { &mut limits } else { &mut requests };
            map.insert(res.into(), Value::String(q.into()));
        }
    }

    let probe = |a: &mut Annotations, kind: &str, path: &str, d: [i64; 4]| {
        let mut get = |what: &str, default: i64, min: i64| {
            a.int(&format!("sidecar-{kind}-probe-{what}"), min, 3600)
                .unwrap_or(default)
        };
        json!({
            "httpGet": {"path": path, "port": PUBLIC_PORT},
            "initialDelaySeconds": get("delay-seconds", d[0], 0),
            "timeoutSeconds": get("timeout-seconds", d[1], 1),
            "periodSeconds": get("period-seconds", d[2], 1),
            "failureThreshold": get("threshold", d[3], 1),
        })
    };
    // Liveness asks only whether the sidecar itself serves: an app that is slow to start
    // must not get its sidecar restarted.
    let liveness = probe(&mut a, "liveness", "/v1.0/healthz/outbound", [0, 3, 10, 5]);
    let readiness = probe(&mut a, "readiness", "/v1.0/healthz", [1, 1, 2, 5]);

    if !a.errors.is_empty() {
        return Outcome::Deny(a.errors);
    }

    let mut ports =
        vec![json!({"name": "dapr-public", "containerPort": PUBLIC_PORT, "protocol": "TCP"})];
    if metrics {
        ports.push(
            json!({"name": "dapr-metrics", "containerPort": metrics_port, "protocol": "TCP"}),
        );
    }
    let mut container = json!({
        "name": SIDECAR_NAME,
        "image": image,
        "command": ["/outrigger", "sidecar"],
        "args": args,
        "env": sidecar_env,
        "ports": ports,
        "restartPolicy": "Always",
        // The kubelet starts the app containers once this passes: components loaded, APIs up.
        // Not /v1.0/healthz, which waits for the app port: the app would never start.
        "startupProbe": {
            "httpGet": {"path": "/v1.0/healthz/outbound", "port": PUBLIC_PORT},
            "periodSeconds": 1,
            "timeoutSeconds": 1,
            "failureThreshold": 120,
        },
        "readinessProbe": readiness,
        "livenessProbe": liveness,
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    });
    if let Some(p) = &defaults.pull_policy {
        container["imagePullPolicy"] = Value::String(p.clone());
    }
    if !requests.is_empty() || !limits.is_empty() {
        let mut r = serde_json::Map::new();
        if !requests.is_empty() {
            r.insert("requests".into(), Value::Object(requests));
        }
        if !limits.is_empty() {
            r.insert("limits".into(), Value::Object(limits));
        }
        container["resources"] = Value::Object(r);
    }

    let mut ops = Vec::new();
    // First among the init containers, so that later init containers can use the API too.
    if pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        ops.push(json!({"op": "add", "path": "/spec/initContainers/0", "value": container}));
    } else {
        ops.push(json!({"op": "add", "path": "/spec/initContainers", "value": [container]}));
    }
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, c) in containers.iter().enumerate() {
        let existing: Vec<&str> = c
            .get("env")
            .and_then(Value::as_array)
            .map(|e| e.iter().filter_map(|v| v["name"].as_str()).collect())
            .unwrap_or_default();
        // A value the user set wins, as with Dapr.
        let add: Vec<Value> = app_env
            .iter()
            .filter(|v| !existing.contains(&v["name"].as_str().unwrap_or_default()))
            .cloned()
            .collect();
        if add.is_empty() {
            continue;
        }
        if c.get("env").and_then(Value::as_array).is_some() {
            for v in add {
                ops.push(
                    json!({"op": "add", "path": format!("/spec/containers/{i}/env/-"), "value": v}),
                );
            }
        } else {
            ops.push(
                json!({"op": "add", "path": format!("/spec/containers/{i}/env"), "value": add}),
            );
        }
    }
    warnings.sort();
    Outcome::Patch { ops, warnings }
}

fn args_push_switch(args: &mut Vec<String>, s: &str) {
    args.push(s.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> InjectorDefaults {
        InjectorDefaults {
            image: "outrigger:test".into(),
            pull_policy: None,
        }
    }

    fn pod(annotations: Value) -> Value {
        json!({
            "metadata": {"generateName": "web-7d9f-", "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]},
        })
    }

    fn sidecar(out: &Outcome) -> &Value {
        match out {
            Outcome::Patch { ops, .. } => &ops[0]["value"][0],
            other => panic!("expected a patch, got {other:?}"),
        }
    }

    #[test]
    fn unannotated_pods_are_unchanged() {
        assert!(matches!(
            mutate(&pod(json!({})), &defaults()),
            Outcome::Unchanged(_)
        ));
        assert!(matches!(
            mutate(&pod(json!({"dapr.io/enabled": "false"})), &defaults()),
            Outcome::Unchanged(_)
        ));
    }

    #[test]
    fn tutorial_annotations_give_a_native_sidecar() {
        let out = mutate(
            &pod(
                json!({"dapr.io/enabled": "true", "dapr.io/app-id": "bindings-nodeapp", "dapr.io/app-port": "3000"}),
            ),
            &defaults(),
        );
        let c = sidecar(&out);
        assert_eq!(c["restartPolicy"], "Always");
        assert_eq!(c["image"], "outrigger:test");
        let args: Vec<&str> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let w = args.windows(2).collect::<Vec<_>>();
        assert!(w.contains(&["--app-id", "bindings-nodeapp"].as_slice()));
        assert!(w.contains(&["--app-port", "3000"].as_slice()));
        assert!(w.contains(&["--dapr-listen-addresses", "localhost"].as_slice()));
        assert_eq!(c["readinessProbe"]["httpGet"]["port"], PUBLIC_PORT);
        let Outcome::Patch { ops, .. } = &out else {
            unreachable!()
        };
        assert_eq!(ops[1]["path"], "/spec/containers/0/env");
        assert_eq!(ops[1]["value"][0]["name"], "DAPR_HTTP_PORT");
    }

    #[test]
    fn app_id_defaults_to_the_name_prefix() {
        let out = mutate(&pod(json!({"dapr.io/enabled": "true"})), &defaults());
        let args = sidecar(&out)["args"].as_array().unwrap().clone();
        let i = args.iter().position(|a| a == "--app-id").unwrap();
        assert_eq!(args[i + 1], "web-7d9f");
    }

    #[test]
    fn every_bad_annotation_is_reported() {
        let out = mutate(
            &pod(json!({
                "dapr.io/enabled": "true",
                "dapr.io/app-port": "http",
                "dapr.io/log-level": "loud",
                "dapr.io/sidecar-memory-limit": "lots",
                "dapr.io/env": "NOEQUALS",
                "dapr.io/api-token-secret": "Not_A_Name",
            })),
            &defaults(),
        );
        let Outcome::Deny(errors) = out else {
            panic!("expected a denial, got {out:?}")
        };
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("dapr.io/app-port") && e.contains("\"http\""))
        );
    }

    #[test]
    fn quantities() {
        for ok in ["100m", "0.5", "64Mi", "1G", "1e3", "2"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "lots", "1.2.3", "Mi", "10MB", "."] {
            assert!(!is_quantity(bad), "{bad}");
        }
        assert_eq!(quantity_bytes("16Mi"), Some(16 << 20));
    }

    #[test]
    fn user_env_wins_and_existing_env_is_appended_to() {
        let mut p = pod(json!({"dapr.io/enabled": "true", "dapr.io/app-id": "a"}));
        p["spec"]["containers"][0]["env"] = json!([{"name": "DAPR_HTTP_PORT", "value": "1"}]);
        let Outcome::Patch { ops, .. } = mutate(&p, &defaults()) else {
            panic!()
        };
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[1]["path"], "/spec/containers/0/env/-");
        assert_eq!(ops[1]["value"]["name"], "DAPR_GRPC_PORT");
    }
}
