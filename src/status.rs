//! Live state of each input binding, shown by `/v1.0/metadata` and `GetMetadata`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputState {
    /// Waiting for the app port to accept connections.
    WaitingForApp,
    /// The app does not serve this binding: nothing is consumed.
    NotServed,
    /// Consuming and delivering.
    Subscribed,
    /// A delivery failed and is being retried.
    Retrying,
    /// The binding could not start or its backend failed.
    Error,
    /// Shut down.
    Stopped,
}

impl InputState {
    pub fn as_str(self) -> &'static str {
        match self {
            InputState::WaitingForApp => "waiting for app",
            InputState::NotServed => "not served by app",
            InputState::Subscribed => "subscribed",
            InputState::Retrying => "retrying",
            InputState::Error => "error",
            InputState::Stopped => "stopped",
        }
    }
}

#[derive(Debug)]
pub struct InputStatus {
    pub name: String,
    pub component_type: String,
    state: Mutex<(InputState, String)>,
    pub delivered: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub dead_lettered: AtomicU64,
}

/// A point-in-time copy of an [`InputStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSnapshot {
    pub name: String,
    pub component_type: String,
    pub state: InputState,
    pub detail: String,
    pub delivered: u64,
    pub failed_attempts: u64,
    pub dead_lettered: u64,
}

impl InputStatus {
    pub fn new(name: &str, component_type: &str) -> Self {
        InputStatus {
            name: name.to_string(),
            component_type: component_type.to_string(),
            state: Mutex::new((InputState::WaitingForApp, String::new())),
            delivered: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
        }
    }

    pub fn set(&self, state: InputState, detail: impl Into<String>) {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *guard = (state, detail.into());
    }

    /// Moves back to `Subscribed` after a retried delivery went through.
    pub fn recovered(&self) {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if guard.0 == InputState::Retrying {
            *guard = (InputState::Subscribed, String::new());
        }
    }

    pub fn state(&self) -> InputState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    pub fn snapshot(&self) -> InputSnapshot {
        let (state, detail) = self.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        InputSnapshot {
            name: self.name.clone(),
            component_type: self.component_type.clone(),
            state,
            detail,
            delivered: self.delivered.load(Ordering::Relaxed),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
        }
    }
}
