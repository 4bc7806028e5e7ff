//! Ownership of spawned tasks: every task a sidecar spawns is awaited by the
//! level that spawned it (the lifecycle owns the servers and the app wiring,
//! the app wiring owns the input bindings, each consumer owns its partition
//! workers, each producer its broker probe). A panic is caught where the task
//! runs and handed to its owner as an error with the panic's message, so that
//! it is logged, counted and shown (`/v1.0/metadata`, `/metrics`), never lost.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

/// Runs `fut` to its end; a panic inside it becomes `Err` with its message.
pub async fn catch_panic<F: Future>(fut: F) -> Result<F::Output, String> {
    // The state a panic leaves behind is the panicking task's own: its owner
    // only reports it and never touches that state again.
    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|p| panic_message(&*p))
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

/// Why a joined task did not return: its panic, or its cancellation.
pub fn join_error_message(e: tokio::task::JoinError) -> String {
    if e.is_panic() {
        panic_message(&*e.into_panic())
    } else {
        "cancelled".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_its_message() {
        assert_eq!(catch_panic(async { 7 }).await, Ok(7));
        let r = catch_panic(async {
            if true {
                panic!("boom {}", 42);
            }
        })
        .await;
        assert_eq!(r, Err("panicked: boom 42".to_string()));
        let r = catch_panic(async { std::panic::panic_any(3u8) }).await;
        assert_eq!(r, Err("panicked".to_string()));
    }

    #[tokio::test]
    async fn a_join_error_says_why() {
        let e = tokio::spawn(async { panic!("in a task") })
            .await
            .unwrap_err();
        assert_eq!(join_error_message(e), "panicked: in a task");
        let h = tokio::spawn(std::future::pending::<()>());
        h.abort();
        assert_eq!(join_error_message(h.await.unwrap_err()), "cancelled");
    }
}
