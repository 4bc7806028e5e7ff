//! Three `outrigger sidecar` processes in one consumer group on the real broker;
//! one is SIGKILLed mid-stream. Its partitions move to the survivors once the
//! group evicts it, and every record is delivered at least once, in order per
//! partition, none past a committed offset skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::support::*;

const PARTITIONS: i32 = 6;
const DEADLINE: Duration = Duration::from_secs(120);

async fn assigned(http: &str) -> Option<u32> {
    let s = input_status(http, "orders").await;
    if s["state"] != "subscribed" {
        return None;
    }
    s["detail"]
        .as_str()?
        .strip_suffix(" partition(s) assigned")?
        .parse()
        .ok()
}

fn delivered(app: &HttpApp) -> Vec<(i32, i64)> {
    app.accepted()
        .iter()
        .map(|c| (c.partition().unwrap(), c.offset().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_killed_in_a_group_of_three_loses_nothing() {
    const BEFORE: usize = 300;
    const AFTER: usize = 120;
    let broker = Broker::shared();
    let topic = unique("group3");
    let group = unique("group");
    broker.create_topic(&topic, PARTITIONS);
    produce(&broker.addr(), &topic, numbered(BEFORE, PARTITIONS)).await;
    let dir = components_dir(&[input_component(
        "orders",
        &broker.addr(),
        &topic,
        &group,
        &[],
    )]);

    // Slow apps, so that the kill lands mid-stream.
    let mut apps = Vec::new();
    let mut sidecars = Vec::new();
    for i in 0..3 {
        let app = HttpApp::builder()
            .script(|_| Answer::After(Duration::from_millis(15), 200))
            .start()
            .await;
        let sidecar = SidecarProc::builder(dir.path())
            .app_id(&format!("member-{i}"))
            .app_port(app.port)
            .log(&dir.path().join(format!("sidecar-{i}.log")))
            .start();
        apps.push(app);
        sidecars.push(sidecar);
    }
    let https: Vec<String> = sidecars.iter().map(SidecarProc::http).collect();
    wait_until("each member to own partitions", DEADLINE, || {
        let https = https.clone();
        async move {
            let mut total = 0;
            for h in &https {
                let n = assigned(h).await.filter(|n| *n >= 1)?;
                total += n;
            }
            (total == PARTITIONS as u32).then_some(())
        }
    })
    .await;
    wait_until("60 deliveries before the kill", DEADLINE, || {
        let n: usize = apps.iter().map(HttpApp::accepted_count).sum();
        async move { (n >= 60).then_some(()) }
    })
    .await;

    sidecars[1].kill9();
    let victim_partitions: BTreeSet<i32> = delivered(&apps[1]).iter().map(|(p, _)| *p).collect();
    let late = (BEFORE..BEFORE + AFTER)
        .map(|i| Msg::new(format!("m{i}")).partition(i as i32 % PARTITIONS));
    produce(&broker.addr(), &topic, late).await;

    let total = BEFORE + AFTER;
    wait_until(
        "every record delivered by the group",
        Duration::from_secs(180),
        || {
            for i in [0, 2] {
                sidecars[i].assert_alive();
            }
            let union: BTreeSet<(i32, i64)> = apps.iter().flat_map(delivered).collect();
            async move { (union.len() == total).then_some(()) }
        },
    )
    .await;
    // The survivors own every partition now.
    let (h0, h2) = (https[0].clone(), https[2].clone());
    wait_until("the survivors to own all partitions", DEADLINE, || {
        let (h0, h2) = (h0.clone(), h2.clone());
        async move {
            let (a, b) = (assigned(&h0).await?, assigned(&h2).await?);
            (a + b == PARTITIONS as u32).then_some(())
        }
    })
    .await;

    // At least once, in order: per partition, what each member delivered never
    // jumps ahead of what had been delivered before (a repeat may go back).
    let per_partition = (total / PARTITIONS as usize) as i64;
    let mut by_partition: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    let mut repeats = 0;
    for app in &apps {
        let mut high: BTreeMap<i32, i64> = BTreeMap::new();
        for (p, o) in delivered(app) {
            let h = high.entry(p).or_insert(o - 1);
            assert!(
                o <= *h + 1,
                "partition {p}: offset {o} after {h} in one member"
            );
            *h = (*h).max(o);
            if !by_partition.entry(p).or_default().insert(o) {
                repeats += 1;
            }
        }
    }
    for p in 0..PARTITIONS {
        assert_eq!(
            by_partition.get(&p).cloned().unwrap_or_default(),
            (0..per_partition).collect::<BTreeSet<_>>(),
            "partition {p}: every offset delivered"
        );
    }
    let moved: BTreeSet<i32> = victim_partitions
        .iter()
        .copied()
        .filter(|p| {
            delivered(&apps[0])
                .iter()
                .chain(delivered(&apps[2]).iter())
                .any(|(q, _)| q == p)
        })
        .collect();
    assert_eq!(
        moved, victim_partitions,
        "the killed member's partitions moved"
    );
    println!(
        "group of three, one SIGKILLed: {total} records, {} deliveries ({repeats} repeats), partitions {victim_partitions:?} moved",
        apps.iter().map(HttpApp::accepted_count).sum::<usize>()
    );
}
