//! Reads component YAML files: several paths, several documents per file,
//! `scopes`, unquoted scalars. Every problem is collected, none stops the scan.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::Value;

use super::duration::parse_duration;
use super::error::ConfigError;
use super::lines::{KeyLines, key_lines};
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
            match read_file(&file) {
                Ok(text) => load_text(&file, &text, app_id, &mut components, &mut errors),
                Err(message) => errors.push(ConfigError::in_file(&file, message)),
            }
        }
    }
    check_duplicates(&mut components, &mut errors);
    (components, errors)
}

/// The largest component file read: far above any real one (Kubernetes caps a
/// ConfigMap at 1 MiB), low enough that a runaway file cannot exhaust memory.
pub const MAX_FILE_BYTES: u64 = 8 << 20;

/// Reads a component file, refusing what is not a regular file (a FIFO would
/// block, `/dev/zero` never ends) and what is larger than [`MAX_FILE_BYTES`].
fn read_file(file: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    // Non-blocking, so that opening a FIFO returns at once instead of waiting
    // for a writer; it has no effect on a regular file.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(file);
    let f = match opened {
        Ok(f) => f,
        Err(e) => {
            // A link whose target is gone (a Kubernetes volume whose `..data`
            // link broke) or a link loop: say so, with the target.
            return Err(match std::fs::read_link(file) {
                Ok(target) => format!(
                    "cannot read the file: it is a symbolic link to {}, which cannot be opened: {e}",
                    target.display()
                ),
                Err(_) => format!("cannot read the file: {e}"),
            });
        }
    };
    // The type of what was opened, not of the name, so nothing can swap it in between.
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot read the file: {e}"))?;
    let t = meta.file_type();
    if !t.is_file() {
        let what = if t.is_fifo() {
            "a FIFO"
        } else if t.is_char_device() {
            "a character device"
        } else if t.is_block_device() {
            "a block device"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_dir() {
            "a folder"
        } else {
            "not a regular file"
        };
        return Err(format!(
            "cannot read the file: it is {what}, not a regular file"
        ));
    }
    let too_large = || format!("the file is larger than {MAX_FILE_BYTES} bytes");
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // Bounded even when the size the file system reports is wrong (procfs says 0).
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|_| "the file is not valid UTF-8".to_string())
}

/// Loads the components of one file's text, as if read from `file`.
pub fn load_str(file: &Path, text: &str, app_id: &str) -> (Vec<Component>, Vec<ConfigError>) {
    let mut components = Vec::new();
    let mut errors = Vec::new();
    load_text(file, text, app_id, &mut components, &mut errors);
    check_duplicates(&mut components, &mut errors);
    (components, errors)
}

/// The YAML files of a resources path, sorted by name (daprd reads a folder
/// non-recursively). A name ending in .yaml or .yml is listed even when it
/// cannot be read (a dangling link, a FIFO), so that reading it reports why.
fn files_in(path: &Path, errors: &mut Vec<ConfigError>) -> Vec<PathBuf> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => match std::fs::read_dir(path) {
            Ok(entries) => {
                let mut files = Vec::new();
                for entry in entries {
                    let p = match entry {
                        Ok(e) => e.path(),
                        Err(e) => {
                            errors.push(ConfigError::in_file(
                                path,
                                format!("cannot read the resources folder: {e}"),
                            ));
                            continue;
                        }
                    };
                    let yaml =
                        matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
                    // Sub-folders are not read, whatever their name.
                    if yaml && !std::fs::metadata(&p).is_ok_and(|m| m.is_dir()) {
                        files.push(p);
                    }
                }
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
        // A file, or something that is not one: reading it says which.
        Ok(_) => vec![path.to_path_buf()],
        Err(e) if std::fs::symlink_metadata(path).is_ok() => {
            errors.push(ConfigError::in_file(
                path,
                format!("the resources path is a symbolic link that cannot be followed: {e}"),
            ));
            Vec::new()
        }
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
    /// The line of the first non-blank, non-comment line of the document (for a
    /// document libyaml cannot read up to its first node).
    fn start_line(&self) -> usize {
        self.text
            .lines()
            .position(|l| {
                let t = l.trim();
                !t.is_empty() && !t.starts_with('#')
            })
            .map_or(self.first_line, |i| self.first_line + i)
    }
}

/// The lines of one document's keys, as lines of the file.
struct DocLines {
    keys: KeyLines,
    first_line: usize,
    start: usize,
}

impl DocLines {
    fn read(doc: &Document<'_>) -> Self {
        let keys = key_lines(doc.text);
        let start = keys
            .root
            .map_or_else(|| doc.start_line(), |l| doc.first_line + l - 1);
        DocLines {
            keys,
            first_line: doc.first_line,
            start,
        }
    }

    /// The line of the key at `path` (e.g. `spec.type`, `spec.metadata[3].name`).
    fn of(&self, path: &str) -> Option<usize> {
        self.keys.line(path).map(|l| self.first_line + l - 1)
    }

    /// The line of `path`, else where the document starts.
    fn at(&self, path: &str) -> Option<usize> {
        self.of(path).or(Some(self.start))
    }

    /// A plain scalar at `path` of a document that is not valid YAML, read up to
    /// the error, so that the error can still name the component.
    fn hint(&self, path: &str) -> Option<String> {
        let value = self.keys.value(path)?;
        let plain = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        plain.then(|| value.to_string())
    }
}

/// Splits a YAML stream on `---` lines, keeping where each document starts, so
/// that an error in one document does not hide the others. A `---` line stays
/// at the head of the document it starts (it may carry content: `--- {a: 1}`);
/// a byte-order mark, which YAML allows before a document, is dropped.
fn split_documents(text: &str) -> Vec<Document<'_>> {
    const BOM: char = '\u{feff}';
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut first_line = 1usize;
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let t = line.trim_end();
        let t = t.strip_prefix(BOM).unwrap_or(t);
        let starts = t == "---" || t.starts_with("--- ") || t.starts_with("---\t");
        let ends = t == "..." || t.starts_with("... ");
        if starts || ends {
            docs.push(Document {
                text: &text[start..offset],
                first_line,
            });
            if starts {
                start = offset;
                first_line = i + 1;
            } else {
                start = offset + line.len();
                first_line = i + 2;
            }
        }
        offset += line.len();
    }
    docs.push(Document {
        text: &text[start..],
        first_line,
    });
    for doc in &mut docs {
        doc.text = doc.text.strip_prefix(BOM).unwrap_or(doc.text);
    }
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
        // One pass over the document for the line of every key, valid or not
        // (for an invalid one: what could be read before the error).
        let lines = DocLines::read(&doc);
        let named = |mut error: ConfigError| {
            error.component = lines.hint("metadata.name");
            error.component_type = lines.hint("spec.type");
            error
        };
        if flow_depth(doc.text) > MAX_FLOW_DEPTH {
            // libyaml takes time quadratic in this depth (100k `[` take minutes);
            // serde_yaml would refuse the document anyway (its limit is 128).
            errors.push(named(
                ConfigError::in_file(
                    file,
                    format!("invalid YAML: flow collections ([ or {{) nest deeper than {MAX_FLOW_DEPTH} levels"),
                )
                .at_line(Some(lines.start)),
            ));
            continue;
        }
        let value: Value = match serde_yaml::from_str(doc.text) {
            Ok(v) => v,
            Err(e) => {
                let line = e.location().map(|l| doc.first_line + l.line() - 1);
                errors.push(named(
                    ConfigError::in_file(file, format!("invalid YAML: {}", strip_location(&e)))
                        .at_line(line),
                ));
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
                .at_line(Some(lines.start)),
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
                tracing::warn!(file = %file.display(), line = lines.start, "skipping a YAML document that is not a Dapr resource (no apiVersion, no kind)");
                continue;
            }
            None => {
                errors.push(
                    ConfigError::in_file(file, "`kind` is missing (expected `Component`)")
                        .field("kind")
                        .at_line(Some(lines.start)),
                );
                continue;
            }
        }
        if let Some(c) = parse_component(file, &lines, map, errors) {
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
    lines: &DocLines,
    map: &serde_yaml::Mapping,
    errors: &mut Vec<ConfigError>,
) -> Option<Component> {
    let before = errors.len();
    let start = lines.start;
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
            .at_line(lines.at("apiVersion")),
        ),
        _ => errors.push(
            err(format!("`apiVersion` is missing (expected {API_VERSION})")).field("apiVersion"),
        ),
    }

    if name.is_empty() {
        errors.push(
            err("`metadata.name` is missing: every component needs a name".into())
                .field("metadata.name")
                .at_line(lines.at("metadata")),
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
            .at_line(lines.at("metadata.name")),
        );
    }

    let Some(spec) = spec else {
        errors.push(
            err("`spec` is missing or not a mapping".into())
                .field("spec")
                .at_line(lines.at("spec")),
        );
        return None;
    };
    let spec_line = lines.at("spec");
    if component_type.is_empty() {
        errors.push(
            err("`spec.type` is missing (e.g. bindings.kafka)".into())
                .field("spec.type")
                .at_line(lines.of("spec.type").or(spec_line)),
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
                        .at_line(lines.at("spec.ignoreErrors")),
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
                        .at_line(lines.at("spec.initTimeout")),
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
                        .field(format!("spec.metadata[{i}]"))
                        .at_line(lines.of(&format!("spec.metadata[{i}]")).or(Some(start))),
                    );
                    continue;
                };
                let item_name = entry.get("name").and_then(scalar_text).unwrap_or_default();
                if item_name.is_empty() {
                    errors.push(
                        err(format!("spec.metadata[{i}] has no `name`"))
                            .field(format!("spec.metadata[{i}]"))
                            .at_line(lines.of(&format!("spec.metadata[{i}]")).or(Some(start))),
                    );
                    continue;
                }
                let line = lines
                    .of(&format!("spec.metadata[{i}].name"))
                    .or_else(|| lines.of(&format!("spec.metadata[{i}]")));
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
                .at_line(lines.at("spec.metadata")),
        ),
    }

    let scopes = match map.get("scopes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(seq)) => seq.iter().filter_map(scalar_text).collect(),
        Some(_) => {
            errors.push(
                err("`scopes` must be a list of app ids".into())
                    .field("scopes")
                    .at_line(lines.at("scopes")),
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
            ("spec.type", lines.of("spec.type")),
            ("spec.version", lines.of("spec.version")),
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
        let text = "\u{feff}a: 1\n---\nb: 2\n\n--- {c: 3}\n...\n\u{feff}---\nd: 4\n";
        let docs = split_documents(text);
        let seen: Vec<_> = docs.iter().map(|d| (d.first_line, d.text)).collect();
        assert_eq!(
            seen,
            [
                (1, "a: 1\n"),
                (2, "---\nb: 2\n\n"),
                (5, "--- {c: 3}\n"),
                (7, ""),
                (7, "---\nd: 4\n"),
            ]
        );
    }

    #[test]
    fn every_field_has_its_exact_line_block_or_flow() {
        let text = "# header\n\napiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: orders\nspec:\n  type: bindings.kafka\n  version: v1\n  metadata:\n  - {name: brokers, value: x}\n  - name: topics\n    value: t\n  -\n    value: g\n    name: consumerGroup\n";
        let (components, errors) = load_str(Path::new("f.yaml"), text, "app");
        assert!(errors.is_empty(), "{errors:?}");
        let c = &components[0];
        assert_eq!(c.line, Some(3), "the document starts at its first key");
        let line = |n: &str| c.metadata.get_item(n).and_then(|i| i.line);
        assert_eq!(line("brokers"), Some(11));
        assert_eq!(line("topics"), Some(12));
        assert_eq!(line("consumerGroup"), Some(16));
        assert_eq!(c.key_lines.get("spec.type"), Some(&8));
        assert_eq!(c.key_lines.get("spec.version"), Some(&9));
    }

    #[test]
    fn a_byte_order_mark_before_a_component_is_allowed() {
        let text = "\u{feff}apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: bom\nspec:\n  type: bindings.cron\n  metadata:\n  - name: schedule\n    value: \"@every 1s\"\n";
        let (components, errors) = load_str(Path::new("bom.yaml"), text, "app");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(components[0].name, "bom");
        assert_eq!(
            components[0].metadata.get_item("schedule").unwrap().line,
            Some(8)
        );
    }

    #[test]
    fn names_the_component_of_a_document_that_is_not_yaml() {
        let text = "metadata:\n  # a comment\n  name: \"orders\"\nspec:\n  type: bindings.kafka\n  metadata: [oops\n";
        let (_, errors) = load_str(Path::new("bad.yaml"), text, "app");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].component.as_deref(), Some("orders"));
        assert_eq!(errors[0].component_type.as_deref(), Some("bindings.kafka"));
        let (_, errors) = load_str(Path::new("odd.yaml"), "metadata:\n  name: a: b\n", "app");
        assert_eq!(errors[0].component, None, "only plain names");
    }
}
