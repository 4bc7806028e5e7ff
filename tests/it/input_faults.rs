//! Kafka input under faults: failed deliveries are retried in order, an app
//! that is not up yet is waited for, a SIGKILLed sidecar loses nothing, two
//! sidecars share a group, poison messages go to the dead-letter topic, the
//! app concurrency cap holds, and a graceful shutdown finishes and commits the
//! delivery in flight.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::time::Duration;

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn failed_delivery_is_retried_and_later_messages_wait() {
    let broker = Broker::start();
    let topic = unique("retry");
    broker.create_topic(&topic, 1);
    produce(&broker.addr(), &topic, numbered(10, 1)).await;
    let app = HttpApp::builder()
        .script(|c| {
            if c.offset() == Some(3) && c.attempt <= 3 {
                Answer::Status(500)
            } else {
                Answer::Status(200)
            }
        })
        .start()
        .await;
    let component = input_component("retry", &broker.addr(), &topic, &unique("group"), &[]);
    let sidecar = start_sidecar(&[component], |c| c.app_port = Some(app.port)).await;

    wait_cond("10 deliveries", DEADLINE, || app.accepted_count() >= 10).await;
    assert_eq!(
        app.accepted_offsets(),
        (0..10).collect::<Vec<i64>>(),
        "accepted strictly in produce order, no gaps, no duplicates"
    );
    let texts: Vec<String> = app.accepted().iter().map(|c| c.text()).collect();
    assert_eq!(texts, (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>());

    let calls = app.deliveries("retry");
    let attempts_of_3: Vec<usize> = calls
        .iter()
        .filter(|c| c.offset() == Some(3))
        .map(|c| c.attempt)
        .collect();
    assert_eq!(
        attempts_of_3,
        vec![1, 2, 3, 4],
        "three failures, then success"
    );
    let last_try_of_3 = calls.iter().rposition(|c| c.offset() == Some(3)).unwrap();
    let first_of_4 = calls.iter().position(|c| c.offset() == Some(4)).unwrap();
    assert!(
        first_of_4 > last_try_of_3,
        "offset 4 must wait until offset 3 is delivered"
    );
    let s = input_status(&sidecar.http(), "retry").await;
    assert_eq!(s["failedAttempts"], 3, "{s}");
    assert_eq!(s["delivered"], 10, "{s}");
    assert_eq!(
        s["state"], "subscribed",
        "back to normal after the retry: {s}"
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_starts_once_the_app_listens() {
    let broker = Broker::start();
    let topic = unique("late");
    broker.create_topic(&topic, 1);
    produce(&broker.addr(), &topic, numbered(3, 1)).await;
    // Held until the app listens on it: no other process can take it meanwhile.
    let reserved = ReservedPort::new();
    let port = reserved.port();
    let component = input_component("late", &broker.addr(), &topic, &unique("group"), &[]);
    let sidecar = start_sidecar(&[component], |c| c.app_port = Some(port)).await;

    // Not listening yet: the sidecar says it waits, and is not ready.
    wait_input_state(&sidecar.http(), "late", "waiting for app", DEADLINE).await;
    let health = reqwest::get(format!("{}/v1.0/healthz", sidecar.http()))
        .await
        .unwrap();
    assert_eq!(health.status(), 500, "not ready while the app is away");

    let app = HttpApp::builder().start_on(port).await;
    wait_cond("3 deliveries", DEADLINE, || app.accepted_count() >= 3).await;
    assert_eq!(app.accepted_offsets(), vec![0, 1, 2]);
    let health = reqwest::get(format!("{}/v1.0/healthz", sidecar.http()))
        .await
        .unwrap();
    assert_eq!(health.status(), 204);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn app_restart_mid_stream_loses_nothing() {
    const N: i64 = 30;
    let broker = Broker::start();
    let topic = unique("bounce");
    broker.create_topic(&topic, 1);
    produce(&broker.addr(), &topic, numbered(N as usize, 1)).await;
    let slow = |_: &Call| Answer::After(Duration::from_millis(20), 200);
    // The port stays reserved while the app is away, for the second app.
    let reserved = ReservedPort::new();
    let port = reserved.port();
    let mut app1 = HttpApp::builder().script(slow).start_on(port).await;
    let component = input_component("bounce", &broker.addr(), &topic, &unique("group"), &[]);
    let sidecar = start_sidecar(&[component], |c| c.app_port = Some(port)).await;

    wait_cond("10 deliveries", DEADLINE, || app1.accepted_count() >= 10).await;
    // Answers what it has in flight, then refuses connections.
    app1.stop().await;
    wait_input_state(&sidecar.http(), "bounce", "retrying", DEADLINE).await;
    let app2 = HttpApp::builder().script(slow).start_on(port).await;
    wait_cond("the rest", DEADLINE, || {
        app2.accepted_offsets().last() == Some(&(N - 1))
    })
    .await;
    let run1 = app1.accepted_offsets();
    let run2 = app2.accepted_offsets();
    assert!((run1.len() as i64) < N, "stopped mid-stream");
    assert_eq!(
        run1.iter().chain(run2.iter()).copied().collect::<Vec<_>>(),
        (0..N).collect::<Vec<_>>(),
        "in order, nothing lost, nothing twice"
    );
    let http = sidecar.http();
    wait_input_state(&http, "bounce", "subscribed", DEADLINE).await;
    assert!(input_status(&http, "bounce").await["failedAttempts"].as_u64() >= Some(1));
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_the_app_never_answers_times_out_and_is_retried() {
    let broker = Broker::start();
    let topic = unique("hung");
    broker.create_topic(&topic, 1);
    produce(&broker.addr(), &topic, numbered(3, 1)).await;
    let app = HttpApp::builder()
        .script(|c| {
            if c.offset() == Some(1) && c.attempt == 1 {
                Answer::Hang
            } else {
                Answer::Status(200)
            }
        })
        .start()
        .await;
    let component = input_component("hung", &broker.addr(), &topic, &unique("group"), &[]);
    let sidecar = start_sidecar(&[component], |c| {
        c.app_port = Some(app.port);
        c.app_request_timeout = Duration::from_secs(1);
    })
    .await;

    wait_cond("3 deliveries", DEADLINE, || app.accepted_count() >= 3).await;
    assert_eq!(app.accepted_offsets(), vec![0, 1, 2]);
    let tries: Vec<usize> = app
        .deliveries("hung")
        .iter()
        .filter(|c| c.offset() == Some(1))
        .map(|c| c.attempt)
        .collect();
    assert_eq!(tries, vec![1, 2], "timed out once, then delivered");
    let s = input_status(&sidecar.http(), "hung").await;
    assert_eq!(s["failedAttempts"], 1, "{s}");
    sidecar.stop().await;
}

/// An `outrigger sidecar` child process for the app on `app_port`; restarts append to `log`.
fn sidecar_process(dir: &Path, app_port: u16, log: &Path) -> SidecarProc {
    SidecarProc::builder(dir)
        .app_id("killed")
        .app_port(app_port)
        .log(log)
        .ready_within(DEADLINE)
        .start()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_stream_then_restart_loses_nothing() {
    const N: i64 = 300;
    let broker = Broker::start();
    let topic = unique("stream");
    let group = unique("group");
    broker.create_topic(&topic, 1);
    produce(&broker.addr(), &topic, numbered(N as usize, 1)).await;
    let dir = components_dir(&[input_component(
        "stream",
        &broker.addr(),
        &topic,
        &group,
        &[],
    )]);
    let log = dir.path().join("sidecar.log");
    // A slow app, so that the kill lands mid-stream.
    let slow = || Answer::After(Duration::from_millis(20), 200);

    let app1 = HttpApp::builder().script(move |_| slow()).start().await;
    let mut first = sidecar_process(dir.path(), app1.port, &log);
    wait_cond(
        "100 deliveries before the kill",
        Duration::from_secs(90),
        || app1.accepted_count() >= 100,
    )
    .await;
    first.kill9();
    let run1 = app1.accepted_offsets();
    assert!(
        (run1.len() as i64) < N,
        "the kill must land mid-stream ({} delivered)",
        run1.len()
    );
    assert_eq!(
        run1,
        (0..run1.len() as i64).collect::<Vec<_>>(),
        "first run in order"
    );

    let (brokers, g, t) = (broker.addr(), group.clone(), topic.clone());
    let committed = tokio::task::spawn_blocking(move || committed(&brokers, &g, &t, 0))
        .await
        .unwrap();
    let resume = committed.unwrap_or(0);
    // At-least-once: nothing is committed that the app had not accepted.
    assert!(
        resume <= run1.len() as i64,
        "committed {resume} but the app accepted only up to {}",
        run1.len() as i64 - 1
    );

    let app2 = HttpApp::builder().script(move |_| slow()).start().await;
    let _second = sidecar_process(dir.path(), app2.port, &log);
    wait_cond(
        "every offset delivered after the restart",
        Duration::from_secs(120),
        || {
            app2.accepted_offsets()
                .last()
                .is_some_and(|last| *last == N - 1)
        },
    )
    .await;
    let run2 = app2.accepted_offsets();
    assert_eq!(
        run2,
        (resume..N).collect::<Vec<_>>(),
        "the restart resumes exactly at the committed offset ({resume}) and goes on in order"
    );
    let union: BTreeSet<i64> = run1.iter().chain(run2.iter()).copied().collect();
    assert_eq!(
        union,
        (0..N).collect::<BTreeSet<_>>(),
        "every offset delivered at least once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_a_delivery_hangs_commits_only_what_was_accepted() {
    const N: i64 = 200;
    const STUCK: i64 = 120;
    let broker = Broker::start();
    let topic = unique("stuck");
    let group = unique("group");
    broker.create_topic(&topic, 1);
    produce(&broker.addr(), &topic, numbered(N as usize, 1)).await;
    let dir = components_dir(&[input_component(
        "stuck",
        &broker.addr(),
        &topic,
        &group,
        &[],
    )]);
    let log = dir.path().join("sidecar.log");
    // The app never answers offset STUCK: the sidecar has it in flight for good.
    let app1 = HttpApp::builder()
        .script(|c| {
            if c.offset() == Some(STUCK) {
                Answer::Hang
            } else {
                Answer::Status(200)
            }
        })
        .start()
        .await;
    let mut first = sidecar_process(dir.path(), app1.port, &log);
    // Auto-commit has caught up with everything accepted before the stuck one...
    let (brokers, g, t) = (broker.addr(), group.clone(), topic.clone());
    tokio::task::spawn_blocking(move || {
        wait_for(
            "the commit to reach the stuck offset",
            Duration::from_secs(90),
            || committed(&brokers, &g, &t, 0).filter(|c| *c >= STUCK),
        )
    })
    .await
    .unwrap();
    assert!(
        app1.deliveries("stuck")
            .iter()
            .any(|c| c.offset() == Some(STUCK)),
        "the stuck offset is in flight"
    );
    first.kill9();
    assert_eq!(app1.accepted_offsets(), (0..STUCK).collect::<Vec<_>>());
    // ...and never went past the delivery that did not finish.
    let (brokers, g, t) = (broker.addr(), group.clone(), topic.clone());
    let after_kill = tokio::task::spawn_blocking(move || committed(&brokers, &g, &t, 0))
        .await
        .unwrap();
    assert_eq!(after_kill, Some(STUCK), "nothing unaccepted is committed");

    let app2 = HttpApp::start().await;
    let _second = sidecar_process(dir.path(), app2.port, &log);
    wait_cond(
        "the rest after the restart",
        Duration::from_secs(120),
        || app2.accepted_count() >= (N - STUCK) as usize,
    )
    .await;
    assert_eq!(
        app2.accepted_offsets(),
        (STUCK..N).collect::<Vec<_>>(),
        "the restart resumes at the unfinished delivery"
    );
}

/// Partitions assigned to a sidecar's consumer, from its input status.
async fn assigned(http: &str, name: &str) -> Option<u32> {
    let s = input_status(http, name).await;
    if s["state"] != "subscribed" {
        return None;
    }
    s["detail"]
        .as_str()?
        .strip_suffix(" partition(s) assigned")?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_sidecars_in_one_group_split_the_partitions() {
    let broker = Broker::start();
    let topic = unique("split");
    let group = unique("group");
    broker.create_topic(&topic, 4);
    let component = input_component("split", &broker.addr(), &topic, &group, &[]);
    let app_a = HttpApp::start().await;
    let app_b = HttpApp::start().await;
    let a = start_sidecar(std::slice::from_ref(&component), |c| {
        c.app_port = Some(app_a.port)
    })
    .await;
    let b = start_sidecar(&[component], |c| c.app_port = Some(app_b.port)).await;

    let (ha, hb) = (a.http(), b.http());
    wait_until(
        "the 4 partitions split between the two sidecars",
        Duration::from_secs(90),
        || async {
            match (assigned(&ha, "split").await, assigned(&hb, "split").await) {
                (Some(x), Some(y)) if x >= 1 && y >= 1 && x + y == 4 => Some(()),
                _ => None,
            }
        },
    )
    .await;
    produce(&broker.addr(), &topic, numbered(40, 4)).await;

    let all: BTreeSet<(i32, i64)> = (0..4).flat_map(|p| (0..10).map(move |o| (p, o))).collect();
    let seen = |app: &HttpApp| -> Vec<(i32, i64)> {
        app.accepted()
            .iter()
            .map(|c| (c.partition().unwrap(), c.offset().unwrap()))
            .collect()
    };
    wait_cond("all 40 messages delivered", DEADLINE, || {
        let union: BTreeSet<_> = seen(&app_a).into_iter().chain(seen(&app_b)).collect();
        union == all
    })
    .await;
    let (got_a, got_b) = (seen(&app_a), seen(&app_b));
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "each sidecar delivers"
    );
    let parts_a: HashSet<i32> = got_a.iter().map(|(p, _)| *p).collect();
    let parts_b: HashSet<i32> = got_b.iter().map(|(p, _)| *p).collect();
    assert!(
        parts_a.is_disjoint(&parts_b),
        "each partition has one owner: {parts_a:?} / {parts_b:?}"
    );
    for (app, got) in [(&app_a, &got_a), (&app_b, &got_b)] {
        for p in 0..4 {
            let offsets: Vec<i64> = got
                .iter()
                .filter(|(q, _)| *q == p)
                .map(|(_, o)| *o)
                .collect();
            if !offsets.is_empty() {
                assert_eq!(
                    offsets,
                    (0..10).collect::<Vec<_>>(),
                    "partition {p} in order"
                );
            }
        }
        assert!(app.max_inflight() >= 1);
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rebalance_mid_stream_hands_over_without_loss_or_duplicates() {
    const PER_PARTITION: i64 = 100;
    let broker = Broker::start();
    let topic = unique("handover");
    let group = unique("group");
    broker.create_topic(&topic, 4);
    produce(
        &broker.addr(),
        &topic,
        numbered(4 * PER_PARTITION as usize, 4),
    )
    .await;
    let component = input_component("handover", &broker.addr(), &topic, &group, &[]);
    // Slow enough that the stream is still going when the second member joins.
    let slow = |_: &Call| Answer::After(Duration::from_millis(100), 200);
    let app_a = HttpApp::builder().script(slow).start().await;
    let app_b = HttpApp::builder().script(slow).start().await;
    let a = start_sidecar(std::slice::from_ref(&component), |c| {
        c.app_port = Some(app_a.port)
    })
    .await;
    wait_cond("the first member to deliver", DEADLINE, || {
        app_a.accepted_count() >= 20
    })
    .await;
    let b = start_sidecar(&[component], |c| c.app_port = Some(app_b.port)).await;

    let all: BTreeSet<(i32, i64)> = (0..4)
        .flat_map(|p| (0..PER_PARTITION).map(move |o| (p, o)))
        .collect();
    let seen = |app: &HttpApp| -> Vec<(i32, i64)> {
        app.accepted()
            .iter()
            .map(|c| (c.partition().unwrap(), c.offset().unwrap()))
            .collect()
    };
    wait_cond("every message delivered", Duration::from_secs(90), || {
        let union: BTreeSet<_> = seen(&app_a).into_iter().chain(seen(&app_b)).collect();
        union == all
    })
    .await;
    let (got_a, got_b) = (seen(&app_a), seen(&app_b));
    assert!(
        !got_b.is_empty(),
        "the second member took over some partitions"
    );
    // Revocation waits for the delivery in flight and commits before handing over.
    assert_eq!(
        got_a.len() + got_b.len(),
        all.len(),
        "no message delivered twice across the handover"
    );
    for got in [&got_a, &got_b] {
        for p in 0..4 {
            let offsets: Vec<i64> = got
                .iter()
                .filter(|(q, _)| *q == p)
                .map(|(_, o)| *o)
                .collect();
            assert!(
                offsets.windows(2).all(|w| w[0] < w[1]),
                "partition {p} in order: {offsets:?}"
            );
        }
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_message_goes_to_the_dead_letter_topic() {
    let broker = Broker::start();
    let (topic, dlt) = (unique("poison"), unique("dlt"));
    broker.create_topic(&topic, 1);
    broker.create_topic(&dlt, 1);
    let msgs = (0..5).map(|i| {
        Msg::new(format!("m{i}"))
            .key(&format!("k{i}"))
            .header("origin", "test")
    });
    produce(&broker.addr(), &topic, msgs).await;
    let app = HttpApp::builder()
        .script(|c| {
            if c.offset() == Some(2) {
                Answer::Reply(500, "cannot take this one".into())
            } else {
                Answer::Status(200)
            }
        })
        .start()
        .await;
    let component = input_component(
        "poison",
        &broker.addr(),
        &topic,
        &unique("group"),
        &[("deadLetterTopic", &dlt), ("maxDeliveryAttempts", "2")],
    );
    let sidecar = start_sidecar(&[component], |c| c.app_port = Some(app.port)).await;

    wait_cond("the messages after the poison one", DEADLINE, || {
        app.accepted_count() >= 4
    })
    .await;
    assert_eq!(app.accepted_offsets(), vec![0, 1, 3, 4]);
    let tries: Vec<usize> = app
        .deliveries("poison")
        .iter()
        .filter(|c| c.offset() == Some(2))
        .map(|c| c.attempt)
        .collect();
    assert_eq!(tries, vec![1, 2], "maxDeliveryAttempts bounds the attempts");

    let dead = read_back(broker.addr(), dlt, 1).await;
    let r = &dead[0];
    assert_eq!(r.text(), "m2");
    assert_eq!(r.key_text().as_deref(), Some("k2"));
    assert_eq!(
        r.header("origin").as_deref(),
        Some("test"),
        "{:?}",
        r.headers
    );
    assert_eq!(
        r.header("outrigger-source-topic").as_deref(),
        Some(topic.as_str())
    );
    assert_eq!(r.header("outrigger-source-partition").as_deref(), Some("0"));
    assert_eq!(r.header("outrigger-source-offset").as_deref(), Some("2"));
    assert_eq!(
        r.header("outrigger-delivery-attempts").as_deref(),
        Some("2")
    );
    let reason = r.header("outrigger-dead-letter-reason").unwrap_or_default();
    assert!(
        reason.contains("500"),
        "reason names the app's answer: {reason}"
    );
    let http = sidecar.http();
    wait_until("the dead-letter count", DEADLINE, || async {
        (input_status(&http, "poison").await["deadLettered"] == 1).then_some(())
    })
    .await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn app_max_concurrency_caps_deliveries_in_flight() {
    let broker = Broker::start();
    let topic = unique("capped");
    broker.create_topic(&topic, 2);
    produce(&broker.addr(), &topic, numbered(20, 2)).await;
    let app = HttpApp::builder()
        .script(|_| Answer::After(Duration::from_millis(30), 200))
        .start()
        .await;
    let component = input_component("capped", &broker.addr(), &topic, &unique("group"), &[]);
    let sidecar = start_sidecar(&[component], |c| {
        c.app_port = Some(app.port);
        c.app_max_concurrency = Some(1);
    })
    .await;

    wait_cond("20 deliveries", DEADLINE, || app.accepted_count() >= 20).await;
    let partitions: HashSet<i32> = app
        .accepted()
        .iter()
        .filter_map(|c| c.partition())
        .collect();
    assert_eq!(partitions.len(), 2, "both partitions were delivered");
    assert_eq!(
        app.max_inflight(),
        1,
        "never more than one delivery at the app"
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_finishes_and_commits_the_delivery_in_flight() {
    let broker = Broker::start();
    let topic = unique("drain");
    let group = unique("group");
    broker.create_topic(&topic, 1);
    produce(&broker.addr(), &topic, numbered(3, 1)).await;
    let app = HttpApp::builder()
        .script(|c| {
            if c.offset() == Some(1) {
                Answer::After(Duration::from_millis(1500), 200)
            } else {
                Answer::Status(200)
            }
        })
        .start()
        .await;
    let component = input_component("drain", &broker.addr(), &topic, &group, &[]);
    let sidecar = start_sidecar(std::slice::from_ref(&component), |c| {
        c.app_port = Some(app.port)
    })
    .await;

    wait_cond("offset 1 in flight", DEADLINE, || {
        app.deliveries("drain")
            .iter()
            .any(|c| c.offset() == Some(1))
    })
    .await;
    sidecar.stop().await;
    assert_eq!(
        app.accepted_offsets(),
        vec![0, 1],
        "the delivery in flight completed; nothing new started"
    );
    let (brokers, g, t) = (broker.addr(), group.clone(), topic.clone());
    let committed = tokio::task::spawn_blocking(move || committed(&brokers, &g, &t, 0))
        .await
        .unwrap();
    assert_eq!(committed, Some(2), "the finished delivery was committed");

    // The next member of the group starts after it.
    let app2 = HttpApp::start().await;
    let next = start_sidecar(&[component], |c| c.app_port = Some(app2.port)).await;
    wait_cond("the next member's first delivery", DEADLINE, || {
        app2.accepted_count() >= 1
    })
    .await;
    assert_eq!(
        app2.accepted_offsets()[0],
        2,
        "offset 1 is not delivered again"
    );
    next.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_failing_at_shutdown_is_not_committed() {
    let broker = Broker::start();
    let topic = unique("unacked");
    let group = unique("group");
    broker.create_topic(&topic, 1);
    produce(&broker.addr(), &topic, numbered(3, 1)).await;
    let app = HttpApp::builder()
        .script(|c| {
            if c.offset() == Some(1) {
                Answer::After(Duration::from_millis(1500), 500)
            } else {
                Answer::Status(200)
            }
        })
        .start()
        .await;
    let component = input_component("unacked", &broker.addr(), &topic, &group, &[]);
    let sidecar = start_sidecar(std::slice::from_ref(&component), |c| {
        c.app_port = Some(app.port)
    })
    .await;

    wait_cond("offset 1 in flight", DEADLINE, || {
        app.deliveries("unacked")
            .iter()
            .any(|c| c.offset() == Some(1))
    })
    .await;
    sidecar.stop().await;
    assert_eq!(app.accepted_offsets(), vec![0]);
    let (brokers, g, t) = (broker.addr(), group.clone(), topic.clone());
    let committed = tokio::task::spawn_blocking(move || committed(&brokers, &g, &t, 0))
        .await
        .unwrap();
    assert_eq!(
        committed,
        Some(1),
        "only what the app accepted is committed"
    );

    let app2 = HttpApp::start().await;
    let next = start_sidecar(&[component], |c| c.app_port = Some(app2.port)).await;
    wait_cond("the next member's deliveries", DEADLINE, || {
        app2.accepted_count() >= 2
    })
    .await;
    assert_eq!(
        app2.accepted_offsets(),
        vec![1, 2],
        "the message the app refused is delivered again"
    );
    next.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_outlasting_the_grace_period_is_not_committed() {
    let broker = Broker::start();
    let topic = unique("outlast");
    let group = unique("group");
    broker.create_topic(&topic, 1);
    produce(&broker.addr(), &topic, numbered(3, 1)).await;
    // The grace period is 3 s (test_config); the app takes 6 s for offset 1.
    let app = HttpApp::builder()
        .script(|c| {
            if c.offset() == Some(1) && c.attempt == 1 {
                Answer::After(Duration::from_secs(6), 200)
            } else {
                Answer::Status(200)
            }
        })
        .start()
        .await;
    let component = input_component("outlast", &broker.addr(), &topic, &group, &[]);
    let sidecar = start_sidecar(std::slice::from_ref(&component), |c| {
        c.app_port = Some(app.port)
    })
    .await;

    wait_cond("offset 1 in flight", DEADLINE, || {
        app.deliveries("outlast")
            .iter()
            .any(|c| c.offset() == Some(1))
    })
    .await;
    sidecar.stop().await;
    // The app accepts it in the end, but after the sidecar gave up on it: the
    // sidecar must not record it as done, as the next owner may already have it.
    wait_cond("the late answer", DEADLINE, || {
        app.accepted_offsets().contains(&1)
    })
    .await;
    let (brokers, g, t) = (broker.addr(), group.clone(), topic.clone());
    let committed = tokio::task::spawn_blocking(move || committed(&brokers, &g, &t, 0))
        .await
        .unwrap();
    assert_eq!(
        committed,
        Some(1),
        "only the delivery finished in time is committed"
    );

    let app2 = HttpApp::start().await;
    let next = start_sidecar(&[component], |c| c.app_port = Some(app2.port)).await;
    wait_cond("the next member's deliveries", DEADLINE, || {
        app2.accepted_count() >= 2
    })
    .await;
    assert_eq!(
        app2.accepted_offsets(),
        vec![1, 2],
        "delivered again by the next owner"
    );
    next.stop().await;
}
