//! Configuration errors: each names the file, the line where known, the
//! component and its type, and the field, so a user can fix all at once.

use std::fmt;
use std::path::PathBuf;

/// One problem found in the component files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub component: Option<String>,
    pub component_type: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn in_file(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.into(),
            line: None,
            component: None,
            component_type: None,
            field: None,
            message: message.into(),
        }
    }

    pub fn at_line(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ":")?;
        match (&self.component, &self.component_type) {
            (Some(name), Some(ty)) => write!(f, " component {name:?} ({ty}):")?,
            (Some(name), None) => write!(f, " component {name:?}:")?,
            (None, Some(ty)) => write!(f, " component of type {ty}:")?,
            (None, None) => {}
        }
        if let Some(field) = &self.field {
            write!(f, " field {field:?}:")?;
        }
        write!(f, " {}", self.message)
    }
}

/// Every problem found across all component files, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the component files:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}
