//! Reads component YAML files: several paths, several documents per file,
//! `scopes`, unquoted scalars. Every problem is collected, none stops the scan.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::Value;

use super::duration::parse_duration;
use super::error::ConfigError;
use super::{Component, Metadata, MetadataItem};

const API_VERSION: &str = "dapr.io/v1alpha1";
const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Loads every component of the given files or folders that is in scope for `app_id`.
/// Returns the components that parsed and every error found.
pub fn load(paths: &[PathBuf], app_id: &str) -> (Vec<Component>, Vec<ConfigError>) {
    let mut components = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        for file in files_in(path, &mut errors) {
            match std::fs::read(&file) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => load_text(&file, &text, app_id, &mut components, &mut errors),
                    Err(_) => {
                        errors.push(ConfigError::in_file(&file, "the file is not valid UTF-8"))
                    }
                },
                Err(e) => errors.push(ConfigError::in_file(
                    &file,
                    format!("cannot read the file: {e}"),
                )),
            }
        }
    }
    check_duplicates(&mut components, &mut errors);
    (components, errors)
}

/// Loads the components of one file's text, as if read from `file`.
pub fn load_str(file: &Path, text: &str, app_id: &str) -> (Vec<Component>, Vec<ConfigError>) {
    let mut components = Vec::new();
    let mut errors = Vec::new();
    load_text(file, text, app_id, &mut components, &mut errors);
    check_duplicates(&mut components, &mut errors);
    (components, errors)
}

/// The YAML files of a resources path, sorted by name (daprd reads a folder non-recursively).
fn files_in(path: &Path, errors: &mut Vec<ConfigError>) -> Vec<PathBuf> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => vec![path.to_path_buf()],
        Ok(_) => match std::fs::read_dir(path) {
            Ok(entries) => {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.is_file()
                            && matches!(
                                p.extension().and_then(|e| e.to_str()),
                                Some("yaml" | "yml")
                            )
                    })
                    .collect();
                files.sort();
                files
            }
            Err(e) => {
                errors.push(ConfigError::in_file(
                    path,
                    format!("cannot read the resources folder: {e}"),
                ));
                Vec::new()
            }
        },
        Err(e) => {
            errors.push(ConfigError::in_file(
                path,
                format!("resources path not found: {e}"),
            ));
            Vec::new()
        }
    }
}

/// One YAML document of a file, with the line its text starts on (1-based).
struct Document<'a> {
    text: &'a str,
    first_line: usize,
}

impl Document<'_> {
    /// The line of the first non-blank, non-comment line of the document.
    fn start_line(&self) -> usize {
        self.text
            .lines()
            .position(|l| {
                let t = l.trim();
                !t.is_empty() && !t.starts_with('#')
            })
            .map_or(self.first_line, |i| self.first_line + i)
    }

    /// The line on which a metadata item `name: <field>` is written, after `spec:`.
    fn metadata_item_line(&self, field: &str) -> Option<usize> {
        let mut in_spec = false;
        for (i, line) in self.text.lines().enumerate() {
            let t = line.trim();
            if t.starts_with("spec:") {
                in_spec = true;
                continue;
            }
            if !in_spec {
                continue;
            }
            let t = t.trim_start_matches('-').trim_start();
            if let Some(rest) = t.strip_prefix("name:") {
                let v = rest.trim().trim_matches(|c| c == '"' || c == '\'');
                if v == field {
                    return Some(self.first_line + i);
                }
            }
        }
        None
    }

    /// The line on which a key is first written (e.g. `type:` under `spec:`).
    fn key_line(&self, key: &str, after: Option<&str>) -> Option<usize> {
        let mut armed = after.is_none();
        for (i, line) in self.text.lines().enumerate() {
            let t = line.trim_start().trim_start_matches('-').trim_start();
            if !armed {
                armed = after.is_some_and(|a| t.starts_with(a));
                continue;
            }
            if t.starts_with(key) && t[key.len()..].starts_with(':') {
                return Some(self.first_line + i);
            }
        }
        None
    }
}

impl Document<'_> {
    /// The line of a key written at the top level (no indentation), e.g. `metadata:`.
    fn top_key_line(&self, key: &str) -> Option<usize> {
        self.text
            .lines()
            .position(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))
            .map(|i| self.first_line + i)
    }

    /// Best effort for a document that is not valid YAML: the plain scalar written as
    /// `key:` in the indented block under the top-level `parent:` (e.g. metadata → name),
    /// so that the error can still name the component.
    fn hint(&self, parent: &str, key: &str) -> Option<String> {
        let mut lines = self.text.lines();
        lines.find(|l| l.trim_end() == format!("{parent}:"))?;
        for line in lines {
            if !line.starts_with([' ', '\t']) {
                if line.trim().is_empty() || line.trim_start().starts_with('#') {
                    continue;
                }
                return None;
            }
            let Some(rest) = line.trim().strip_prefix(key) else {
                continue;
            };
            let Some(value) = rest.strip_prefix(':') else {
                continue;
            };
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            let plain = !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            return plain.then(|| value.to_string());
        }
        None
    }
}

/// Splits a YAML stream on `---` lines, keeping where each document starts.
fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut first_line = 1usize;
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let t = line.trim_end();
        let is_marker = t == "---" || t.starts_with("--- ") || t == "...";
        if is_marker {
            docs.push(Document {
                text: &text[start..offset],
                first_line,
            });
            start = offset + line.len();
            first_line = i + 2;
        }
        offset += line.len();
    }
    docs.push(Document {
        text: &text[start..],
        first_line,
    });
    docs
}

fn load_text(
    file: &Path,
    text: &str,
    app_id: &str,
    out: &mut Vec<Component>,
    errors: &mut Vec<ConfigError>,
) {
    for doc in split_documents(text) {
        if doc.text.trim().is_empty() {
            continue;
        }
        if flow_depth(doc.text) > MAX_FLOW_DEPTH {
            // libyaml takes time quadratic in this depth (100k `[` take minutes);
            // serde_yaml would refuse the document anyway (its limit is 128).
            let mut error = ConfigError::in_file(
                file,
                format!("invalid YAML: flow collections ([ or {{) nest deeper than {MAX_FLOW_DEPTH} levels"),
            )
            .at_line(Some(doc.start_line()));
            error.component = doc.hint("metadata", "name");
            error.component_type = doc.hint("spec", "type");
            errors.push(error);
            continue;
        }
        let value: Value = match serde_yaml::from_str(doc.text) {
            Ok(v) => v,
            Err(e) => {
                let line = e.location().map(|l| doc.first_line + l.line() - 1);
                let mut error =
                    ConfigError::in_file(file, format!("invalid YAML: {}", strip_location(&e)))
                        .at_line(line);
                error.component = doc.hint("metadata", "name");
                error.component_type = doc.hint("spec", "type");
                errors.push(error);
                continue;
            }
        };
        if value.is_null() {
            continue;
        }
        let Some(map) = value.as_mapping() else {
            errors.push(
                ConfigError::in_file(
                    file,
                    "a resource must be a YAML mapping (apiVersion, kind, metadata, spec)",
                )
                .at_line(Some(doc.start_line())),
            );
            continue;
        };
        let kind = map.get("kind").and_then(Value::as_str);
        match kind {
            Some("Component") => {}
            Some(other) => {
                tracing::debug!(file = %file.display(), kind = other, "skipping a resource that is not a Component");
                continue;
            }
            None if map.get("apiVersion").is_none() => {
                tracing::warn!(file = %file.display(), line = doc.start_line(), "skipping a YAML document that is not a Dapr resource (no apiVersion, no kind)");
                continue;
            }
            None => {
                errors.push(
                    ConfigError::in_file(file, "`kind` is missing (expected `Component`)")
                        .field("kind")
                        .at_line(Some(doc.start_line())),
                );
                continue;
            }
        }
        if let Some(c) = parse_component(file, &doc, map, errors) {
            if c.scopes.is_empty() || c.scopes.iter().any(|s| s == app_id) {
                out.push(c);
            } else {
                tracing::info!(component = %c.name, app.id = app_id, scopes = ?c.scopes, "component not loaded: app id not in its scopes");
            }
        }
    }
}

/// Deeper flow nesting than this is refused before parsing (see [`flow_depth`]).
const MAX_FLOW_DEPTH: usize = 1000;

/// How deeply `[` and `{` nest in a YAML text, skipping quoted scalars and
/// comments. An estimate that errs high only for brackets inside block or
/// plain scalars, far below any limit that matters.
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut chars = text.chars().peekable();
    // Whether a quote or `#` here would start a quoted scalar or a comment.
    let mut at_token_start = true;
    while let Some(c) = chars.next() {
        match c {
            '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            '#' if at_token_start => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' if at_token_start => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '\'' if at_token_start => {
                while let Some(c) = chars.next() {
                    if c == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
            }
            _ => {}
        }
        at_token_start = c.is_whitespace() || matches!(c, '[' | '{' | ',' | ':' | '-' | '?');
    }
    max
}

/// serde_yaml appends "at line X column Y"; we print our own file-relative line instead.
fn strip_location(e: &serde_yaml::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// A scalar as Dapr reads it: strings as is, numbers and bools as their text.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        Value::Tagged(t) => scalar_text(&t.value),
        // Dapr's DynamicValue also takes structured values; they arrive as JSON text.
        Value::Sequence(_) | Value::Mapping(_) => serde_json::to_string(v).ok(),
    }
}

fn parse_component(
    file: &Path,
    doc: &Document<'_>,
    map: &serde_yaml::Mapping,
    errors: &mut Vec<ConfigError>,
) -> Option<Component> {
    let before = errors.len();
    let start = doc.start_line();
    // Name and type come first, so that every later error can carry them.
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(scalar_text)
        .unwrap_or_default();
    let spec = map.get("spec").and_then(Value::as_mapping);
    let component_type = spec
        .and_then(|s| s.get("type"))
        .and_then(scalar_text)
        .unwrap_or_default();
    let err = |message: String| {
        let mut e = ConfigError::in_file(file, message).at_line(Some(start));
        if !name.is_empty() {
            e.component = Some(name.clone());
        }
        if !component_type.is_empty() {
            e.component_type = Some(component_type.clone());
        }
        e
    };

    match map.get("apiVersion").map(scalar_text) {
        Some(Some(v)) if v == API_VERSION => {}
        Some(Some(v)) => errors.push(
            err(format!(
                "unsupported apiVersion {v:?} (expected {API_VERSION})"
            ))
            .field("apiVersion")
            .at_line(doc.top_key_line("apiVersion").or(Some(start))),
        ),
        _ => errors.push(
            err(format!("`apiVersion` is missing (expected {API_VERSION})")).field("apiVersion"),
        ),
    }

    if name.is_empty() {
        errors.push(
            err("`metadata.name` is missing: every component needs a name".into())
                .field("metadata.name")
                .at_line(doc.top_key_line("metadata").or(Some(start))),
        );
    } else if let Some(bad) = name
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '%'))
    {
        errors.push(
            err(format!(
                "component name {name:?} contains {bad:?}; names are used in URLs"
            ))
            .field("metadata.name")
            .at_line(doc.key_line("name", Some("metadata:")).or(Some(start))),
        );
    }

    let Some(spec) = spec else {
        errors.push(
            err("`spec` is missing or not a mapping".into())
                .field("spec")
                .at_line(doc.top_key_line("spec").or(Some(start))),
        );
        return None;
    };
    let spec_line = doc.top_key_line("spec").or(Some(start));
    if component_type.is_empty() {
        errors.push(
            err("`spec.type` is missing (e.g. bindings.kafka)".into())
                .field("spec.type")
                .at_line(doc.key_line("type", Some("spec:")).or(spec_line)),
        );
    }
    let version = match spec.get("version").and_then(scalar_text) {
        Some(v) if !v.is_empty() => v,
        _ => "v1".to_string(),
    };

    let ignore_errors = match spec
        .get("ignoreErrors")
        .map(|v| scalar_text(v).unwrap_or_default())
    {
        None => false,
        Some(v) => match parse_bool(&v) {
            Some(b) => b,
            None => {
                errors.push(
                    err(format!("expected true or false, got {v:?}"))
                        .field("spec.ignoreErrors")
                        .at_line(doc.key_line("ignoreErrors", Some("spec:")).or(Some(start))),
                );
                false
            }
        },
    };
    let init_timeout = match spec.get("initTimeout").and_then(scalar_text) {
        None => DEFAULT_INIT_TIMEOUT,
        Some(v) if v.is_empty() => DEFAULT_INIT_TIMEOUT,
        Some(v) => match parse_duration(&v) {
            Ok(d) => d,
            Err(e) => {
                errors.push(
                    err(e)
                        .field("spec.initTimeout")
                        .at_line(doc.key_line("initTimeout", Some("spec:")).or(Some(start))),
                );
                DEFAULT_INIT_TIMEOUT
            }
        },
    };

    let mut items = Vec::new();
    match spec.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(seq)) => {
            for (i, entry) in seq.iter().enumerate() {
                let Some(entry) = entry.as_mapping() else {
                    errors.push(
                        err(format!(
                            "spec.metadata[{i}] must be a mapping with `name` and `value`"
                        ))
                        .field(format!("spec.metadata[{i}]")),
                    );
                    continue;
                };
                let item_name = entry.get("name").and_then(scalar_text).unwrap_or_default();
                if item_name.is_empty() {
                    errors.push(
                        err(format!("spec.metadata[{i}] has no `name`"))
                            .field(format!("spec.metadata[{i}]")),
                    );
                    continue;
                }
                let line = doc.metadata_item_line(&item_name);
                let value = if let Some(v) = entry.get("value") {
                    scalar_text(v).unwrap_or_default()
                } else if entry.get("secretKeyRef").is_some() {
                    errors.push(
                        err(
                            "`secretKeyRef` is not supported: outrigger has no secret stores; \
                             write the value in `value` or read it from the environment with `envRef: VAR`"
                                .into(),
                        )
                        .field(&item_name)
                        .at_line(line.or(Some(start))),
                    );
                    continue;
                } else if let Some(var) = entry.get("envRef").and_then(scalar_text) {
                    match std::env::var(&var) {
                        Ok(v) => v,
                        Err(_) => {
                            errors.push(
                                err(format!("`envRef` names the environment variable {var:?}, which is not set"))
                                    .field(&item_name)
                                    .at_line(line.or(Some(start))),
                            );
                            continue;
                        }
                    }
                } else {
                    String::new()
                };
                items.push(MetadataItem {
                    name: item_name,
                    value,
                    line,
                });
            }
        }
        Some(_) => errors.push(
            err("`spec.metadata` must be a list of {name, value} items".into())
                .field("spec.metadata")
                .at_line(doc.key_line("metadata", Some("spec:")).or(Some(start))),
        ),
    }

    let scopes = match map.get("scopes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(seq)) => seq.iter().filter_map(scalar_text).collect(),
        Some(_) => {
            errors.push(
                err("`scopes` must be a list of app ids".into())
                    .field("scopes")
                    .at_line(doc.key_line("scopes", None).or(Some(start))),
            );
            Vec::new()
        }
    };

    if errors.len() > before {
        return None;
    }
    Some(Component {
        name,
        component_type,
        version,
        metadata: Metadata::new(items),
        ignore_errors,
        init_timeout,
        scopes,
        file: file.to_path_buf(),
        line: Some(start),
        key_lines: [
            ("spec.type", doc.key_line("type", Some("spec:"))),
            ("spec.version", doc.key_line("version", Some("spec:"))),
        ]
        .into_iter()
        .filter_map(|(k, l)| Some((k, l?)))
        .collect(),
    })
}

/// Booleans as Dapr accepts them in metadata.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "on" | "1" => Some(true),
        "false" | "no" | "n" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Reports a name defined twice and keeps only its first definition.
fn check_duplicates(components: &mut Vec<Component>, errors: &mut Vec<ConfigError>) {
    let mut first_of: HashMap<String, (PathBuf, Option<usize>)> = HashMap::new();
    components.retain(|c| match first_of.get(&c.name) {
        Some((file, line)) => {
            errors.push(ConfigError {
                file: c.file.clone(),
                line: c.line,
                component: Some(c.name.clone()),
                component_type: Some(c.component_type.clone()),
                field: Some("metadata.name".into()),
                message: format!(
                    "duplicate component name: already defined in {}{}",
                    file.display(),
                    line.map(|l| format!(":{l}")).unwrap_or_default()
                ),
            });
            false
        }
        None => {
            first_of.insert(c.name.clone(), (c.file.clone(), c.line));
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_flow_nesting_outside_quotes_and_comments() {
        assert_eq!(flow_depth("a: [1, {b: [2]}]\n"), 3);
        assert_eq!(flow_depth("a: \"[[[[\" # [[[[\nb: '[[''[['\n"), 0);
        assert_eq!(
            flow_depth("a: \"x\\\"[\"\nb: [c]\n"),
            1,
            "an escaped quote does not end the string"
        );
        assert_eq!(
            flow_depth("a: it's [x]\n"),
            1,
            "an apostrophe inside a word is no quote"
        );
        assert_eq!(flow_depth(&"[".repeat(100_000)), 100_000);
    }

    #[test]
    fn deep_flow_nesting_is_refused_quickly() {
        // 100k levels took libyaml minutes; refused up front, with the name kept.
        let text = format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: deep\nspec:\n  type: bindings.kafka\n  metadata: {}\n",
            "[a: ".repeat(100_000)
        );
        let (components, errors) = load_str(Path::new("deep.yaml"), &text, "app");
        assert!(components.is_empty());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].message.contains("nest deeper than 1000"),
            "{}",
            errors[0]
        );
        assert_eq!(errors[0].component.as_deref(), Some("deep"));
        // Nesting serde_yaml itself refuses is still its error.
        let (_, errors) = load_str(
            Path::new("d.yaml"),
            &format!("a: {}\n", "[".repeat(200)),
            "app",
        );
        assert!(
            errors[0].message.contains("recursion limit"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn splits_documents_with_lines() {
        let text = "a: 1\n---\nb: 2\n\n---\nc: 3\n";
        let docs = split_documents(text);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[1].first_line, 3);
        assert_eq!(docs[2].first_line, 6);
        assert_eq!(docs[2].text, "c: 3\n");
    }

    #[test]
    fn finds_metadata_item_lines() {
        let text = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: brokers\nspec:\n  type: bindings.kafka\n  metadata:\n    - name: brokers\n      value: x\n";
        let doc = Document {
            text,
            first_line: 10,
        };
        assert_eq!(doc.metadata_item_line("brokers"), Some(17));
        assert_eq!(doc.key_line("type", Some("spec:")), Some(15));
        assert_eq!(doc.top_key_line("metadata"), Some(12));
        assert_eq!(
            doc.top_key_line("name"),
            None,
            "indented keys are not top level"
        );
    }

    #[test]
    fn hints_name_and_type_of_a_document_that_is_not_yaml() {
        let text = "metadata:\n  # a comment\n  name: \"orders\"\nspec:\n  type: bindings.kafka\n  metadata: [oops\n";
        let doc = Document {
            text,
            first_line: 1,
        };
        assert_eq!(doc.hint("metadata", "name").as_deref(), Some("orders"));
        assert_eq!(doc.hint("spec", "type").as_deref(), Some("bindings.kafka"));
        assert_eq!(
            doc.hint("spec", "version"),
            None,
            "stops at the end of the block"
        );
        let odd = Document {
            text: "metadata:\n  name: a: b\n",
            first_line: 1,
        };
        assert_eq!(odd.hint("metadata", "name"), None, "only plain names");
    }
}
