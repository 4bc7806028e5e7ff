//! Component configuration: YAML loading, typed metadata helpers, and errors
//! collected across every file so that a user sees all problems at once.

mod duration;
mod error;
mod lines;
mod loader;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

pub use duration::{format_duration, parse_duration};
pub use error::{ConfigError, ConfigErrors};
pub use loader::{load, load_str, parse_bool};

/// A component as written in a file, in scope for this app, before its type is checked.
#[derive(Debug, Clone)]
pub struct Component {
    pub name: String,
    /// `spec.type`, e.g. `bindings.kafka`.
    pub component_type: String,
    pub version: String,
    pub metadata: Metadata,
    pub ignore_errors: bool,
    pub init_timeout: Duration,
    pub scopes: Vec<String>,
    pub file: PathBuf,
    /// Where the component's document starts.
    pub line: Option<usize>,
    /// Lines of keys outside `spec.metadata` (`spec.type`, `spec.version`), so that an
    /// error about them points at the key rather than at the document.
    pub key_lines: HashMap<&'static str, usize>,
}

impl Component {
    /// An error about this component, naming its file, name and type, and the line of
    /// `field` where it is written (else the line the component starts on).
    pub fn error(&self, field: Option<&str>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: field
                .and_then(|f| {
                    self.metadata
                        .get_item(f)
                        .and_then(|i| i.line)
                        .or_else(|| self.key_lines.get(f).copied())
                })
                .or(self.line),
            component: Some(self.name.clone()),
            component_type: Some(self.component_type.clone()),
            field: field.map(str::to_string),
            message: message.into(),
        }
    }
}

/// One `spec.metadata` entry.
#[derive(Debug, Clone)]
pub struct MetadataItem {
    pub name: String,
    pub value: String,
    pub line: Option<usize>,
}

/// The `spec.metadata` list. Names match case-insensitively, as in Dapr.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    items: Vec<MetadataItem>,
}

impl Metadata {
    pub fn new(items: Vec<MetadataItem>) -> Self {
        Metadata { items }
    }

    pub fn get_item(&self, name: &str) -> Option<&MetadataItem> {
        self.items
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(name))
    }

    /// The value, if present and not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_item(name)
            .map(|i| i.value.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|i| i.name.as_str())
    }
}

/// Reads typed metadata of one component and collects every field error. It
/// records every name the binding asks for, so that [`FieldReader::finish`]
/// can warn about each item the binding did not read: one rule for every
/// binding, no list of known names to keep in step with the code.
pub struct FieldReader<'a> {
    component: &'a Component,
    errors: Vec<ConfigError>,
    /// Names asked for, lower-cased (names match case-insensitively).
    read: RefCell<HashSet<String>>,
}

/// At most this many unread items are named one by one; the rest are counted.
const MAX_UNREAD_WARNINGS: usize = 20;

impl<'a> FieldReader<'a> {
    pub fn new(component: &'a Component) -> Self {
        FieldReader {
            component,
            errors: Vec::new(),
            read: RefCell::new(HashSet::new()),
        }
    }

    /// Names that Dapr's component of this type knows but that have no effect
    /// here: they count as read, with a debug line each when present.
    pub fn accept_unused(&self, names: &[&str]) {
        for name in names {
            if self.component.metadata.get_item(name).is_some() {
                tracing::debug!(binding.name = %self.component.name, field = name, "metadata field has no effect here");
            }
            self.mark(name);
        }
    }

    fn mark(&self, name: &str) {
        self.read.borrow_mut().insert(name.to_ascii_lowercase());
    }

    /// Warns about every metadata item that no read asked for, and about every
    /// repeat of a name (only its first item is read).
    fn warn_unread(&self) {
        let read = self.read.borrow();
        let c = self.component;
        let mut seen = HashSet::new();
        let mut ignored = c.metadata.items.iter().filter_map(|i| {
            let name = i.name.to_ascii_lowercase();
            if !seen.insert(name.clone()) {
                Some((i, "it repeats a name given above, whose value is used"))
            } else if !read.contains(&name) {
                Some((
                    i,
                    "the binding does not read it (unknown, or unused with these settings)",
                ))
            } else {
                None
            }
        });
        for (item, why) in ignored.by_ref().take(MAX_UNREAD_WARNINGS) {
            tracing::warn!(
                binding.name = %c.name,
                binding.r#type = %c.component_type,
                file = %c.file.display(),
                line = item.line.unwrap_or(0),
                field = %item.name,
                "metadata field ignored: {why}"
            );
        }
        let more = ignored.count();
        if more > 0 {
            tracing::warn!(binding.name = %c.name, file = %c.file.display(), "{more} more metadata fields ignored");
        }
    }

    pub fn component(&self) -> &'a Component {
        self.component
    }

    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(self.component.error(Some(field), message));
    }

    pub fn str(&self, name: &str) -> Option<&'a str> {
        self.mark(name);
        self.component.metadata.get(name)
    }

    pub fn required(&mut self, name: &str, hint: &str) -> Option<&'a str> {
        let v = self.str(name);
        if v.is_none() {
            self.errors.push(
                self.component
                    .error(None, format!("required metadata is missing ({hint})"))
                    .field(name),
            );
        }
        v
    }

    /// A comma-separated list, blanks dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.str(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn bool(&mut self, name: &str, default: bool) -> bool {
        match self.str(name) {
            None => default,
            Some(v) => parse_bool(v).unwrap_or_else(|| {
                self.error(name, format!("expected true or false, got {v:?}"));
                default
            }),
        }
    }

    pub fn duration(&mut self, name: &str, default: Duration) -> Duration {
        match self.str(name) {
            None => default,
            Some(v) => parse_duration(v).unwrap_or_else(|e| {
                self.error(name, e);
                default
            }),
        }
    }

    pub fn number<T: std::str::FromStr>(&mut self, name: &str) -> Option<T> {
        let v = self.str(name)?;
        match v.parse::<T>() {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(name, format!("expected a whole number, got {v:?}"));
                None
            }
        }
    }

    /// Ends the read: the value when no field was wrong, else every error; a
    /// warning for each item that was not read.
    pub fn finish<T>(self, value: T) -> Result<T, Vec<ConfigError>> {
        self.warn_unread();
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }
}
