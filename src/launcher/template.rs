//! Dapr's multi-app run template (`dapr.yaml`, version 1): reads it and turns
//! each app into what `outrigger run` needs to start it (folder, command,
//! environment, sidecar flags). Relative paths are relative to the template's
//! folder. Fields this launcher has no use for (log destinations, container
//! images, ...) are accepted and ignored, so Dapr's templates load unchanged.
//! One field is outrigger's own: `startAfter: <appID>` orders the start of an
//! app after another app's sidecar is ready (see [`AppPlan::start_after`]).

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read the run template {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the run template {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("the run template {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A YAML scalar given as text or as a number (`appPort: 3000` or `"3000"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Text(s) => s.clone(),
        }
    }
}

/// `resourcesPaths` as a list, or as one comma-separated string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Paths {
    One(String),
    Many(Vec<String>),
}

impl Paths {
    fn list(&self) -> Vec<String> {
        let items: Vec<String> = match self {
            Paths::One(s) => s.split(',').map(str::to_string).collect(),
            Paths::Many(v) => v.clone(),
        };
        items
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// Per-app settings that `common` may also give (the app's own win).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Settings {
    resources_paths: Option<Paths>,
    /// The older, single-path name.
    resources_path: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, Option<Scalar>>,
    app_protocol: Option<String>,
    app_channel_address: Option<String>,
    log_level: Option<String>,
    #[serde(rename = "daprHTTPMaxRequestSize")]
    dapr_http_max_request_size: Option<Scalar>,
    app_max_concurrency: Option<Scalar>,
    dapr_graceful_shutdown_seconds: Option<Scalar>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppEntry {
    #[serde(rename = "appID")]
    app_id: Option<String>,
    app_dir_path: Option<String>,
    app_port: Option<Scalar>,
    command: Option<Vec<String>>,
    #[serde(rename = "daprHTTPPort")]
    dapr_http_port: Option<Scalar>,
    #[serde(rename = "daprGRPCPort")]
    dapr_grpc_port: Option<Scalar>,
    /// outrigger's own field: the appID of an app listed earlier whose sidecar
    /// must be ready (see [`AppPlan::start_after`]) before this app starts.
    start_after: Option<String>,
    #[serde(flatten)]
    settings: Settings,
}

#[derive(Debug, Deserialize)]
struct Template {
    version: Option<Scalar>,
    #[serde(default)]
    common: Settings,
    #[serde(default)]
    apps: Vec<AppEntry>,
}

/// One app of the template, resolved.
#[derive(Debug, Clone)]
pub struct AppPlan {
    pub app_id: String,
    /// The folder the command runs in.
    pub dir: PathBuf,
    pub command: Vec<String>,
    /// Added to the environment (common, then the app's own).
    pub env: Vec<(String, String)>,
    /// Flags for this app's `outrigger run` (sidecar flags, before `--`).
    pub flags: Vec<OsString>,
    /// Start only once this app's sidecar is ready: its health endpoint answers
    /// and each of its input bindings has joined (for Kafka: partitions
    /// assigned), so that what this app sends first is not missed by a
    /// consumer still joining at the newest offset.
    pub start_after: Option<String>,
}

/// The template file: `path` itself, or `path/dapr.yaml` for a folder.
pub fn locate(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("dapr.yaml")
    } else {
        path.to_path_buf()
    }
}

/// Reads and checks a template; returns its apps in order.
pub fn load(path: &Path) -> Result<Vec<AppPlan>, TemplateError> {
    let file = locate(path);
    let text = std::fs::read_to_string(&file).map_err(|source| TemplateError::Read {
        path: file.clone(),
        source,
    })?;
    let file = std::path::absolute(&file).unwrap_or(file);
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let template: Template =
        serde_yaml::from_str(&text).map_err(|source| TemplateError::Parse {
            path: file.clone(),
            source,
        })?;
    plan(&template, &base).map_err(|message| TemplateError::Invalid {
        path: file,
        message,
    })
}

fn plan(t: &Template, base: &Path) -> Result<Vec<AppPlan>, String> {
    if let Some(v) = &t.version
        && v.text() != "1"
    {
        return Err(format!("version {} is not supported (only 1)", v.text()));
    }
    if t.apps.is_empty() {
        return Err("no apps (the `apps` list is empty)".into());
    }
    let mut seen = HashSet::new();
    let mut plans = Vec::new();
    for (i, app) in t.apps.iter().enumerate() {
        let plan = plan_app(app, &t.common, base).map_err(|e| format!("apps[{i}]: {e}"))?;
        if let Some(after) = &plan.start_after {
            // Only earlier apps: the order is then the list's, and there are no cycles.
            if !seen.contains(after) {
                return Err(format!(
                    "apps[{i}]: startAfter {after:?} must name the appID of an app listed before {}",
                    plan.app_id
                ));
            }
        }
        if !seen.insert(plan.app_id.clone()) {
            return Err(format!("appID {} is used twice", plan.app_id));
        }
        plans.push(plan);
    }
    Ok(plans)
}

fn plan_app(app: &AppEntry, common: &Settings, base: &Path) -> Result<AppPlan, String> {
    let dir = base.join(app.app_dir_path.as_deref().unwrap_or("."));
    if !dir.is_dir() {
        return Err(format!("appDirPath {} is not a folder", dir.display()));
    }
    let app_id = match &app.app_id {
        Some(id) if !id.trim().is_empty() => id.trim().to_string(),
        // As dapr: the app's folder name.
        _ => std::path::absolute(&dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| !n.is_empty())
            .ok_or("no appID, and appDirPath has no name to take it from")?,
    };
    let command = app.command.clone().unwrap_or_default();
    if command.is_empty() || command[0].is_empty() {
        return Err(format!("app {app_id} has no command"));
    }

    let own = &app.settings;
    let mut flags: Vec<OsString> = vec!["--app-id".into(), app_id.clone().into()];
    let mut flag = |name: &str, value: String| {
        flags.push(format!("--{name}").into());
        flags.push(value.into());
    };
    let port = |name: &str, v: &Option<Scalar>| -> Result<Option<u16>, String> {
        v.as_ref()
            .map(|s| {
                s.text()
                    .trim()
                    .parse::<u16>()
                    .map_err(|_| format!("{name} {:?} is not a port number", s.text()))
            })
            .transpose()
    };
    if let Some(p) = port("appPort", &app.app_port)? {
        flag("app-port", p.to_string());
    }
    if let Some(p) = port("daprHTTPPort", &app.dapr_http_port)? {
        flag("dapr-http-port", p.to_string());
    }
    if let Some(p) = port("daprGRPCPort", &app.dapr_grpc_port)? {
        flag("dapr-grpc-port", p.to_string());
    }
    let pick = |f: fn(&Settings) -> Option<String>| f(own).or_else(|| f(common));
    if let Some(v) = pick(|s| s.app_protocol.clone()) {
        flag("app-protocol", v);
    }
    if let Some(v) = pick(|s| s.app_channel_address.clone()) {
        flag("app-channel-address", v);
    }
    if let Some(v) = pick(|s| s.log_level.clone()) {
        flag("log-level", v);
    }
    if let Some(v) = pick(|s| s.dapr_http_max_request_size.as_ref().map(Scalar::text)) {
        flag("dapr-http-max-request-size", v);
    }
    if let Some(v) = pick(|s| s.app_max_concurrency.as_ref().map(Scalar::text)) {
        flag("app-max-concurrency", v);
    }
    if let Some(v) = pick(|s| s.dapr_graceful_shutdown_seconds.as_ref().map(Scalar::text)) {
        flag("dapr-graceful-shutdown-seconds", v);
    }

    let resources = resources_paths(own).or_else(|| resources_paths(common));
    let resources: Vec<PathBuf> = match resources {
        Some(list) => list.iter().map(|p| base.join(p)).collect(),
        // As dapr: the app's own `.dapr/resources` when it has one.
        None => Some(dir.join(".dapr").join("resources"))
            .filter(|p| p.is_dir())
            .into_iter()
            .collect(),
    };
    for path in resources {
        flags.push("--resources-path".into());
        flags.push(path.into());
    }

    let mut env = BTreeMap::new();
    for (k, v) in common.env.iter().chain(own.env.iter()) {
        env.insert(k.clone(), v.as_ref().map(Scalar::text).unwrap_or_default());
    }
    Ok(AppPlan {
        app_id,
        dir,
        command,
        env: env.into_iter().collect(),
        flags,
        start_after: app
            .start_after
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    })
}

fn resources_paths(s: &Settings) -> Option<Vec<String>> {
    let mut list = s
        .resources_paths
        .as_ref()
        .map(Paths::list)
        .unwrap_or_default();
    if let Some(one) = &s.resources_path {
        list.extend(Paths::One(one.clone()).list());
    }
    (!list.is_empty()).then_some(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plans(yaml: &str) -> Result<Vec<AppPlan>, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::create_dir_all(dir.path().join("b")).unwrap();
        let t: Template = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        plan(&t, dir.path())
    }

    #[test]
    fn start_after_names_an_earlier_app() {
        let p = plans(
            "apps:\n- appID: one\n  appDirPath: a\n  command: [x]\n- appID: two\n  appDirPath: b\n  command: [y]\n  startAfter: one\n",
        )
        .unwrap();
        assert_eq!(p[0].start_after, None);
        assert_eq!(p[1].start_after.as_deref(), Some("one"));
        for bad in [
            "apps:\n- appID: one\n  appDirPath: a\n  command: [x]\n  startAfter: two\n- appID: two\n  appDirPath: b\n  command: [y]\n",
            "apps:\n- appID: one\n  appDirPath: a\n  command: [x]\n  startAfter: one\n",
            "apps:\n- appID: one\n  appDirPath: a\n  command: [x]\n- appID: two\n  appDirPath: b\n  command: [y]\n  startAfter: three\n",
        ] {
            let e = plans(bad).unwrap_err();
            assert!(e.contains("startAfter"), "{e}");
        }
    }

    fn flag_value(p: &AppPlan, name: &str) -> Vec<String> {
        p.flags
            .windows(2)
            .filter(|w| w[0] == name)
            .map(|w| w[1].to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn common_and_app_settings() {
        let p = plans(
            r#"
version: 1
common:
  resourcesPaths: ["./components"]
  env: { DEBUG: true, LEVEL: common }
apps:
  - appID: one
    appDirPath: ./a
    appPort: 3000
    appProtocol: http
    command: ["node", "app.js"]
    env: { LEVEL: app, N: 20 }
  - appDirPath: b/
    daprHTTPPort: "3511"
    resourcesPaths: ./x, ./y
    command: ["python3", "app.py"]
    appLogDestination: console
"#,
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].app_id, "one");
        assert_eq!(flag_value(&p[0], "--app-port"), ["3000"]);
        assert!(flag_value(&p[0], "--resources-path")[0].ends_with("components"));
        assert_eq!(
            p[0].env,
            [
                ("DEBUG".into(), "true".into()),
                ("LEVEL".into(), "app".into()),
                ("N".into(), "20".into())
            ]
        );
        assert_eq!(p[1].app_id, "b");
        assert_eq!(flag_value(&p[1], "--dapr-http-port"), ["3511"]);
        let res = flag_value(&p[1], "--resources-path");
        assert!(res[0].ends_with("x") && res[1].ends_with("y"), "{res:?}");
        assert!(p[1].dir.ends_with("b/") || p[1].dir.ends_with("b"));
    }

    #[test]
    fn mistakes_are_named() {
        let e = plans("version: 2\napps: [{appDirPath: a, command: [x]}]").unwrap_err();
        assert!(e.contains("version 2"), "{e}");
        let e = plans("apps: []").unwrap_err();
        assert!(e.contains("no apps"), "{e}");
        let e = plans("apps: [{appID: x, appDirPath: a}]").unwrap_err();
        assert!(e.contains("no command"), "{e}");
        let e = plans("apps: [{appID: x, appDirPath: nope, command: [y]}]").unwrap_err();
        assert!(e.contains("not a folder"), "{e}");
        let e = plans("apps: [{appID: x, appDirPath: a, appPort: big, command: [y]}]").unwrap_err();
        assert!(e.contains("appPort"), "{e}");
        let e = plans(
            "apps: [{appID: x, appDirPath: a, command: [y]}, {appID: x, appDirPath: b, command: [y]}]",
        )
        .unwrap_err();
        assert!(e.contains("used twice"), "{e}");
    }
}
