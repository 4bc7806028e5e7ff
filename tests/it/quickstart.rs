//! The bindings quickstart as the tutorial wires it: two `outrigger sidecar`
//! processes and the real example apps, unchanged. The consumer (`node app.js`,
//! express) runs beside a sidecar with `--app-port`; the producer (`python
//! app.py`, requests) posts orders to its own sidecar's HTTP port. The
//! component is the example's file with only the broker, topic and group
//! rewritten for the test broker.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

const ORDERS: usize = 100;

/// The example component, pointed at `brokers`, `topic` and `group`.
fn quickstart_component(brokers: &str, topic: &str, group: &str) -> String {
    let original =
        std::fs::read_to_string(repo_root().join("components/kafka_bindings.yaml")).unwrap();
    retarget_quickstart_component(&original, "localhost:9092", brokers, topic, group)
}

/// `{ orderId: n }`, as node's console.log prints the parsed body.
fn order_id(line: &str) -> Option<u64> {
    line.trim()
        .strip_prefix("{ orderId: ")?
        .strip_suffix(" }")?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn quickstart_orders_flow_from_python_producer_to_node_consumer() {
    let broker = Broker::start();
    let topic = unique("sample");
    let group = unique("group1");
    // Kafka's default for an auto-created topic, which the tutorial relies on: one partition.
    broker.create_topic(&topic, 1);
    let components = components_dir(&[quickstart_component(&broker.addr(), &topic, &group)]);

    // Consumer: `dapr run --app-id bindings-nodeapp --app-port 3000 node app.js`.
    let reserved = ReservedPort::new();
    let app_port = reserved.port();
    let logs = tempfile::tempdir().unwrap();
    let consumer_sidecar = SidecarProc::builder(components.path())
        .app_id("bindings-nodeapp")
        .app_port(app_port)
        .log(&logs.path().join("consumer-sidecar.log"))
        .start();
    let nodeapp = repo_root().join("examples/bindings/nodeapp");
    let mut cmd = node(&nodeapp, "app.js");
    clear_dapr_env(&mut cmd)
        .env("APP_PORT", app_port.to_string())
        .env("DAPR_HTTP_PORT", consumer_sidecar.http_port.to_string())
        .env("DAPR_GRPC_PORT", consumer_sidecar.grpc_port.to_string());
    let mut consumer = Proc::spawn("node app.js", cmd);
    wait_for("the consumer to listen", Duration::from_secs(30), || {
        assert!(
            consumer.exited().is_none(),
            "the consumer exited\n{}",
            consumer.transcript()
        );
        consumer
            .stdout_lines()
            .iter()
            .any(|l| l.contains(&format!("listening on port {app_port}")))
            .then_some(())
    });
    let consumer_http = consumer_sidecar.http();
    wait_until(
        "the consumer sidecar to join its group",
        Duration::from_secs(60),
        || async {
            input_binding_assigned(&consumer_http, "sample-topic")
                .await
                .then_some(())
        },
    )
    .await;

    // Producer: `dapr run --app-id bindings-pythonapp python3 app.py` (no app port).
    let producer_sidecar = SidecarProc::builder(components.path())
        .app_id("bindings-pythonapp")
        .log(&logs.path().join("producer-sidecar.log"))
        .start();

    // The component reads from the newest offset, as in the tutorial: an order
    // sent before the consumer's start offset is fixed would be skipped. Send a
    // warm-up order 0 until one arrives, so that every later order must arrive.
    let client = reqwest::Client::new();
    let warmup = format!("{}/v1.0/bindings/sample-topic", producer_sidecar.http());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    'warm: loop {
        let resp = client
            .post(&warmup)
            .json(&serde_json::json!({"data": {"orderId": 0}, "operation": "create"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
        let round = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < round {
            if consumer
                .stdout_lines()
                .iter()
                .any(|l| order_id(l) == Some(0))
            {
                break 'warm;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no warm-up order reached the consumer\n{}\n{}",
                consumer.transcript(),
                consumer_sidecar.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let pythonapp = repo_root().join("examples/bindings/pythonapp");
    let mut cmd = Command::new(python());
    clear_dapr_env(&mut cmd)
        .current_dir(&pythonapp)
        .arg("app.py")
        .env("DAPR_HTTP_PORT", producer_sidecar.http_port.to_string())
        .env("DAPR_GRPC_PORT", producer_sidecar.grpc_port.to_string())
        .env("ORDER_INTERVAL", "0.05")
        .env("ORDER_COUNT", ORDERS.to_string())
        .env("PYTHONUNBUFFERED", "1");
    let producer = Proc::spawn("python app.py", cmd);
    let (producer, status) = tokio::task::spawn_blocking(move || {
        let mut p = producer;
        let s = p.wait_exit(Duration::from_secs(120));
        (p, s)
    })
    .await
    .unwrap();
    assert!(
        status.success(),
        "the producer failed\n{}",
        producer.transcript()
    );
    let lines = producer.stdout_lines();
    let responses = lines.iter().filter(|l| *l == "<Response [204]>").count();
    assert_eq!(
        responses,
        ORDERS,
        "every post answered 204\n{}",
        producer.transcript()
    );
    for n in 1..=ORDERS {
        let sent = format!("{{'data': {{'orderId': {n}}}, 'operation': 'create'}}");
        assert!(lines.contains(&sent), "the producer printed {sent}");
    }

    wait_until(
        &format!("{ORDERS} orders at the consumer"),
        Duration::from_secs(60),
        || {
            let n = consumer
                .stdout_lines()
                .iter()
                .filter(|l| order_id(l).is_some_and(|n| n > 0))
                .count();
            async move { (n >= ORDERS).then_some(()) }
        },
    )
    .await;

    // Both sidecars stop cleanly on SIGTERM, as on Ctrl-C in the tutorial.
    let stopped = tokio::task::spawn_blocking(move || {
        let mut sidecars = [consumer_sidecar, producer_sidecar];
        for s in &mut sidecars {
            s.signal(libc::SIGTERM);
        }
        let exits = sidecars
            .each_mut()
            .map(|s| s.wait_exit(Duration::from_secs(15)));
        (exits, sidecars)
    })
    .await
    .unwrap();
    consumer.kill();
    let (exits, sidecars) = stopped;
    for ((exit, sidecar), who) in exits.iter().zip(&sidecars).zip(["consumer", "producer"]) {
        assert!(
            exit.success(),
            "{who} sidecar exit: {exit:?}\n{}",
            sidecar.log_text()
        );
    }

    // Every delivery logs `Hello from Kafka!` then the body; orders 1..=100 in order.
    let out = consumer.stdout_lines();
    let bodies: Vec<(usize, u64)> = out
        .iter()
        .enumerate()
        .filter_map(|(i, l)| order_id(l).map(|n| (i, n)))
        .collect();
    for (i, n) in &bodies {
        assert!(
            *i > 0 && out[i - 1] == "Hello from Kafka!",
            "order {n} not preceded by the greeting\n{}",
            consumer.transcript()
        );
    }
    let hellos = out.iter().filter(|l| *l == "Hello from Kafka!").count();
    assert_eq!(hellos, bodies.len(), "{}", consumer.transcript());
    let orders: Vec<u64> = bodies.iter().map(|(_, n)| *n).filter(|n| *n > 0).collect();
    let want: Vec<u64> = (1..=ORDERS as u64).collect();
    assert_eq!(
        orders,
        want,
        "each order once, in order\n{}",
        consumer.transcript()
    );
}
