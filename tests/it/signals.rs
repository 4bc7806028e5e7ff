//! Signals to an `outrigger sidecar` process: the first SIGTERM drains within
//! `--dapr-graceful-shutdown-seconds`, a second one exits at once, even while a
//! delivery to the app hangs.

use std::time::Duration;

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(60);

/// Starts a sidecar whose one input delivery hangs in the app, with `grace`
/// seconds of graceful shutdown; returns once the delivery is in flight.
async fn sidecar_with_hanging_delivery(grace: &str) -> (SidecarProc, HttpApp, tempfile::TempDir) {
    let broker = Broker::start();
    let topic = unique("signals");
    broker.create_topic(&topic, 1);
    let app = HttpApp::builder()
        .script(|_| Answer::After(Duration::from_secs(3600), 200))
        .start()
        .await;
    let dir = components_dir(&[input_component(
        "orders",
        &broker.addr(),
        &topic,
        &unique("group"),
        &[],
    )]);
    let mut sidecar = SidecarProc::builder(dir.path())
        .app_port(app.port)
        .arg("--dapr-graceful-shutdown-seconds")
        .arg(grace)
        .start();
    produce(&broker.addr(), &topic, [Msg::new("stuck")]).await;
    wait_until("the delivery to reach the app", DEADLINE, || {
        sidecar.assert_alive();
        let n = app.deliveries("orders").len();
        async move { (n >= 1).then_some(()) }
    })
    .await;
    (sidecar, app, dir)
}

async fn wait_exit(sidecar: &mut SidecarProc, what: &str) -> std::process::ExitStatus {
    wait_until(what, DEADLINE, || {
        let status = sidecar.try_wait();
        async move { status }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigterm_exits_without_waiting_for_the_drain() {
    // A grace period far beyond the deadline: only the second signal can end it in time.
    let (mut sidecar, _app, _dir) = sidecar_with_hanging_delivery("3600").await;
    sidecar.signal(libc::SIGTERM);
    wait_until("the drain to begin", DEADLINE, || {
        let begun = sidecar.log_text().contains("shutting down gracefully");
        async move { begun.then_some(()) }
    })
    .await;
    assert!(
        sidecar.try_wait().is_none(),
        "the sidecar must still be draining the hung delivery:\n{}",
        sidecar.log_text()
    );
    sidecar.signal(libc::SIGTERM);
    let status = wait_exit(&mut sidecar, "the sidecar to exit on the second SIGTERM").await;
    assert_eq!(
        status.code(),
        Some(1),
        "exit code 1, as daprd: {}",
        sidecar.log_text()
    );
    assert!(
        sidecar.log_text().contains("second signal"),
        "{}",
        sidecar.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_sigterm_exits_by_the_grace_period_even_with_a_hung_delivery() {
    let (mut sidecar, app, _dir) = sidecar_with_hanging_delivery("2").await;
    sidecar.signal(libc::SIGTERM);
    // Graceful: a normal exit, not the second signal's, with the hung record unacknowledged.
    let status = wait_exit(&mut sidecar, "the sidecar to exit after its grace period").await;
    assert_eq!(status.code(), Some(0), "{}", sidecar.log_text());
    assert!(!sidecar.log_text().contains("second signal"));
    assert_eq!(app.accepted_count(), 0);
}
