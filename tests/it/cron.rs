//! `bindings.cron` delivered to an HTTP app: `@every` and 6-field (seconds
//! first) schedules fire POSTs to /{name}; a cron binding the app does not
//! serve is not started.

use std::time::Duration;

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(30);

fn cron_component(name: &str, schedule: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: bindings.cron\n  version: v1\n  metadata:\n  - name: schedule\n    value: \"{schedule}\"\n"
    )
}

async fn fires_into_the_app(schedule: &str) {
    let app = HttpApp::start().await;
    let name = "ticker";
    let sidecar = start_sidecar(&[cron_component(name, schedule)], |c| {
        c.app_port = Some(app.port)
    })
    .await;

    wait_cond("two cron POSTs", DEADLINE, || {
        app.accepted_to(name).len() >= 2
    })
    .await;
    let ticks = app.accepted_to(name);
    assert_eq!(ticks[0].method, "POST");
    assert!(
        ticks[0].header("readtimeutc").is_some(),
        "a tick says when it fired: {:?}",
        ticks[0].headers
    );
    let status = input_status(&sidecar.http(), name).await;
    assert_eq!(status["state"], "subscribed", "{status}");
    assert_eq!(status["type"], "bindings.cron", "{status}");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_schedule_fires() {
    fires_into_the_app("@every 1s").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn six_field_schedule_fires_every_second() {
    fires_into_the_app("*/1 * * * * *").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unserved_cron_binding_is_not_started() {
    let app = HttpApp::builder().options("quiet", 404).start().await;
    let sidecar = start_sidecar(
        &[
            cron_component("quiet", "@every 100ms"),
            cron_component("loud", "@every 100ms"),
        ],
        |c| c.app_port = Some(app.port),
    )
    .await;

    wait_input_state(&sidecar.http(), "quiet", "not served by app", DEADLINE).await;
    // The served one runs in the same sidecar: once it has fired, the other had its chance.
    wait_cond("the served cron binding to fire", DEADLINE, || {
        !app.accepted_to("loud").is_empty()
    })
    .await;
    assert!(
        app.deliveries("quiet").is_empty(),
        "{:#?}",
        app.deliveries("quiet")
    );
    assert_eq!(app.calls_to("OPTIONS", "quiet").len(), 1);
    sidecar.stop().await;
}
