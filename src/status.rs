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
    state: Mutex<Current>,
    pub delivered: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Tasks of this binding that panicked or ended early.
    pub task_failures: AtomicU64,
    /// What the last of them said, shown until the binding is restarted.
    last_task_failure: Mutex<Option<String>>,
    /// (topic, partition) → messages not yet accepted by the app, from the consumer's statistics.
    lag: Mutex<Vec<((String, i32), i64)>>,
}

/// The state shown, plus what `Subscribed` said last, to show again on recovery.
#[derive(Debug)]
struct Current {
    state: InputState,
    detail: String,
    subscribed_detail: String,
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
    pub task_failures: u64,
    pub last_task_failure: Option<String>,
}

impl InputStatus {
    pub fn new(name: &str, component_type: &str) -> Self {
        InputStatus {
            name: name.to_string(),
            component_type: component_type.to_string(),
            state: Mutex::new(Current {
                state: InputState::WaitingForApp,
                detail: String::new(),
                subscribed_detail: String::new(),
            }),
            delivered: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            task_failures: AtomicU64::new(0),
            last_task_failure: Mutex::new(None),
            lag: Mutex::new(Vec::new()),
        }
    }

    /// Replaces the lag per partition (called every few seconds, not per message).
    pub fn set_lag(&self, lag: Vec<((String, i32), i64)>) {
        *self.lag.lock().unwrap_or_else(|p| p.into_inner()) = lag;
    }

    pub fn lag(&self) -> Vec<((String, i32), i64)> {
        self.lag.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Books a task of this binding that panicked or ended early: counted,
    /// kept as the last failure, and the binding shows `error` with it.
    pub fn task_failed(&self, detail: impl Into<String>) {
        let detail = detail.into();
        self.task_failures.fetch_add(1, Ordering::Relaxed);
        *self
            .last_task_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(detail.clone());
        self.set(InputState::Error, detail);
    }

    pub fn set(&self, state: InputState, detail: impl Into<String>) {
        let mut guard = self.lock();
        guard.state = state;
        guard.detail = detail.into();
        if state == InputState::Subscribed {
            guard.subscribed_detail = guard.detail.clone();
        }
    }

    /// Moves back to `Subscribed` after a retried delivery went through.
    pub fn recovered(&self) {
        self.leave(InputState::Retrying);
    }

    /// Moves back to `Subscribed` from `Error` once the backend is reachable
    /// again (e.g. after a broker outage).
    pub fn backend_recovered(&self) {
        self.leave(InputState::Error);
    }

    fn leave(&self, state: InputState) {
        let mut guard = self.lock();
        if guard.state == state {
            guard.state = InputState::Subscribed;
            guard.detail = guard.subscribed_detail.clone();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> InputState {
        self.lock().state
    }

    pub fn snapshot(&self) -> InputSnapshot {
        let (state, detail) = {
            let guard = self.lock();
            (guard.state, guard.detail.clone())
        };
        InputSnapshot {
            name: self.name.clone(),
            component_type: self.component_type.clone(),
            state,
            detail,
            delivered: self.delivered.load(Ordering::Relaxed),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            task_failures: self.task_failures.load(Ordering::Relaxed),
            last_task_failure: self
                .last_task_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_restores_the_last_subscribed_detail() {
        let s = InputStatus::new("in", "bindings.kafka");
        s.set(InputState::Subscribed, "2 partition(s) assigned");
        s.set(InputState::Error, "all brokers down");
        // A retried delivery does not clear a backend error...
        s.recovered();
        assert_eq!(s.state(), InputState::Error);
        // ...the backend coming back does.
        s.backend_recovered();
        let snap = s.snapshot();
        assert_eq!(snap.state, InputState::Subscribed);
        assert_eq!(snap.detail, "2 partition(s) assigned");

        s.set(InputState::Retrying, "attempt 1 failed");
        // The app still fails: the backend coming back changes nothing.
        s.backend_recovered();
        assert_eq!(s.state(), InputState::Retrying);
        s.recovered();
        assert_eq!(s.snapshot().detail, "2 partition(s) assigned");
    }

    #[test]
    fn recovery_leaves_other_states_alone() {
        let s = InputStatus::new("in", "bindings.kafka");
        s.set(InputState::Stopped, "");
        s.backend_recovered();
        assert_eq!(s.state(), InputState::Stopped);
        s.set(InputState::NotServed, "no app port configured");
        s.backend_recovered();
        assert_eq!(s.state(), InputState::NotServed);
    }
}
